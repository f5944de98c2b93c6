"""Request bodies -> engine `Request`s: what each OpenAI/vLLM field means for one served model.

A body becomes one `Job` per choice (n choices of each prompt); refusals are `BadRequest`s whose
message is the sentence the client gets with its 400. Which fields an engine can honour (logprobs,
min_tokens) is a capability of the engine (engines/registry.py), not a list kept here.

One concern, so one module past 400 lines: what a request body asks of the engine, and its refusals.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace

from s1.core.errors import UserError
from s1.core.forcing import BudgetForcing
from s1.core.formats import encode, open_thinking, render_chat
from s1.core.sampling import Sampling, derive_seed
from s1.engines.base import Request, prepare_ids
from s1.engines.registry import EngineSpec, names
from s1.serve.limits import Limits
from s1.serve.protocol import (
    BUDGET_FIELDS,
    MAX_PROMPTS,
    REFUSED,
    THINKING_ALIASES,
    UNHONOURED,
    BadRequest,
    ChatBody,
    CompletionBody,
    Defaults,
    Message,
    ResponsesBody,
)
from s1.serve.schedulers import Stream
from s1.serve.tools import template_defines_tools


@dataclass
class Job:
    """One choice to generate: the engine request, how its text is cut, and its index in the response."""

    index: int
    request: Request
    stream: Stream
    prompt_index: int
    show_reasoning: bool = True
    """Whether the response carries the thinking (False: vLLM's `include_reasoning: false`, or no thinking)."""


@dataclass(frozen=True)
class ThinkingAsked:
    """What a request asked of thinking, under whichever name it used: a cap (None: the server's default), no
    thinking at all, and the field that said so (for error messages in the request's own words)."""

    cap: int | None = None
    off: bool = False
    field: str = "max_thinking_tokens"
    approximate: bool = False
    """The cap is an effort level's: where the context cannot hold it, thinking takes what the context leaves."""


def prompt_tokens(jobs: list[Job]) -> int:
    """The prompt tokens of a request: each prompt once, however many choices it has."""
    seen = {j.prompt_index: len(j.request.prompt_token_ids) for j in jobs}
    return sum(seen.values())


def _logit_engines() -> str:
    return " or ".join(names(serves=True, logprobs=True))


def refuse_unsupported(body: ChatBody | CompletionBody | ResponsesBody, engine: EngineSpec) -> None:
    """Fields s1 knows but cannot honour at the value given, and options only some engines have."""
    for name, value in body.unhonoured().items():
        neutral = UNHONOURED[name]
        if value == neutral and neutral is not REFUSED:
            continue
        keep = "remove it" if neutral is REFUSED else f"leave it at {neutral!r} or remove it"
        raise BadRequest(f"{name}={value!r} is not supported by s1 serve; {keep}.", param=name)
    if isinstance(body, ResponsesBody):
        return
    if body.stream_options is not None and not body.stream:
        raise BadRequest("stream_options is only allowed with stream: true.")
    if body.min_tokens and not engine.logprobs:
        raise BadRequest(
            "min_tokens needs an in-process engine (it masks stop tokens in the logits); remove it or serve with "
            f"--engine {_logit_engines()}."
        )
    if isinstance(body, CompletionBody):
        if body.suffix:
            raise BadRequest("suffix (fill-in-the-middle) is not supported by s1 serve; remove it.")
        if body.best_of not in (None, 1):
            raise BadRequest("best_of is not supported by s1 serve; use n for several samples.")
        if body.stream and (body.echo or body.logprobs is not None or body.return_token_ids):
            raise BadRequest(
                "echo, logprobs and return_token_ids are supported without streaming only; set stream: false."
            )
    if isinstance(body, ChatBody):
        if body.tool_choice not in (None, "none", "auto"):
            raise BadRequest(
                "tool_choice 'required' or a named function needs guided decoding, which s1 serve does not have; "
                "use 'auto' (the model decides, its calls are parsed from the answer) or 'none'.",
                param="tool_choice",
            )
        if body.tool_choice is not None and not body.tools:
            raise BadRequest("tool_choice needs tools; give the tools or remove tool_choice.", param="tool_choice")
        kind = (body.response_format or {}).get("type", "text")
        if kind not in ("text", "json_object", "json_schema"):
            raise BadRequest(
                f"response_format {kind!r} is not supported; use text, json_object or json_schema.",
                param="response_format",
            )
        if kind != "text" and not engine.logprobs:
            raise BadRequest(
                f"response_format {kind} needs an in-process engine (it masks the answer's logits); serve with "
                f"--engine {_logit_engines()}, or remove it.",
                param="response_format",
            )
        if kind != "text" and body.answer_prefix:
            raise BadRequest(
                "answer_prefix would come before the JSON answer response_format asks for; remove one of them.",
                param="answer_prefix",
            )
        if body.top_logprobs is not None and not body.logprobs:
            raise BadRequest("top_logprobs needs logprobs: true.")
        if body.stream and body.logprobs:
            raise BadRequest("logprobs are supported without streaming only; set stream: false.")
    wants_logprobs = (isinstance(body, CompletionBody) and body.logprobs is not None) or (
        isinstance(body, ChatBody) and body.logprobs
    )
    if wants_logprobs and not engine.logprobs:
        raise BadRequest(
            f"logprobs need an in-process engine; serve with --engine {_logit_engines()}, or remove logprobs."
        )


class Translator:
    """Turns request bodies into engine `Request`s for one served model."""

    def __init__(self, engine, model_name: str, spec: EngineSpec, defaults: Defaults, limits: Limits | None = None):
        self.engine = engine
        self.limits = limits or Limits()
        self.tokenizer = engine.tokenizer
        self.tokens = engine.format_tokens
        self.model_name = model_name
        self.spec = spec
        self.defaults = defaults
        self.vocab = len(engine.tokenizer)
        template = getattr(self.tokenizer, "apply_chat_template", None)
        params = inspect.signature(template).parameters.values() if template else ()
        self._template_own = {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        """apply_chat_template's own parameters, which chat_template_kwargs must not override."""
        longest = max((len(t.encode("utf-8", "replace")) for t in engine.tokenizer.get_vocab()), default=1)
        self.max_prompt_bytes = longest * engine.context_length
        """A prompt this long in UTF-8 cannot fit the context whatever its tokens (no token's text is longer than
        `longest` bytes, which byte-level vocabularies overstate twofold): refused before it is tokenized, which for
        megabytes of text takes the CPU for a minute."""

    def _common(self, body: ChatBody | CompletionBody | ResponsesBody) -> Sampling:
        if body.model not in (None, "", self.model_name):
            raise BadRequest(f"Model {body.model!r} is not served here; use {self.model_name!r} (see /v1/models).")
        refuse_unsupported(body, self.spec)
        for t in getattr(body, "stop_token_ids", None) or []:
            self.check_id(t, "stop_token_ids")
        return self.defaults.sampling_for(body)

    def check_sequences(self, prompts: int, n: int) -> None:
        """One request may ask for at most `max_sequences_per_request` sequences (prompts x n), so that one client
        cannot fill the batch for everyone else; checked before any prompt is tokenized."""
        limit = self.limits.max_sequences_per_request
        if prompts * n > limit:
            asked = f"{prompts} prompts x n={n} = {prompts * n}" if prompts > 1 else f"n={n}"
            raise BadRequest(
                f"This request asks for {asked} sequences, more than the {limit} this server takes per request "
                "(its --max-sequences-per-request); lower n or send the prompts in several requests.",
                param="n" if prompts == 1 else "prompt",
            )

    def check_fits(self, text: str, where: str) -> None:
        """A prompt far longer than the context could hold is a 400 before it is tokenized (`max_prompt_bytes`)."""
        size = len(text.encode("utf-8", "replace"))
        if size > self.max_prompt_bytes:
            raise BadRequest(
                f"The {where} ({size} bytes) is far longer than this model's context of {self.engine.context_length} "
                "tokens can hold; shorten it.",
                param=where if where == "prompt" else None,
            )

    def check_id(self, token, where: str) -> None:
        if not 0 <= token < self.vocab:
            raise BadRequest(
                f"{where} holds token id {token}, outside this model's vocabulary (0 to {self.vocab - 1})."
            )

    def forcing(
        self, body: ChatBody | CompletionBody | ResponsesBody, max_tokens: int | None, max_thinking: int | None
    ) -> BudgetForcing:
        return self.defaults.forcing_for(body, max_tokens, max_thinking)

    # -- thinking, under every name clients use ---------------------------------------------------------------
    def thinking(self, body, template_kwargs: dict | None = None, effort: str | None = None) -> ThinkingAsked:
        """The thinking a request asks for. Caps given as numbers (s1's `max_thinking_tokens`, vLLM's
        `thinking_token_budget`, llama.cpp's `thinking_budget_tokens`, Anthropic's `thinking.budget_tokens`) must
        agree; `reasoning_effort` gives a level's cap where no number is given; `enable_thinking: false`,
        `thinking.type: disabled` and `reasoning_effort: none` ask for no thinking."""
        caps = {}
        if body.max_thinking_tokens is not None:
            caps["max_thinking_tokens"] = body.max_thinking_tokens
        for name in THINKING_ALIASES:
            value = getattr(body, name)
            if value is not None:
                caps[name] = None if value == -1 else value
        thinking = body.thinking
        if thinking is not None and thinking.type == "enabled" and thinking.budget_tokens is not None:
            caps["thinking.budget_tokens"] = thinking.budget_tokens
        if len(set(caps.values())) > 1:
            said = ", ".join(f"{k}={'-1' if v is None else v}" for k, v in caps.items())
            raise BadRequest(f"The request gives different thinking caps ({said}); give one of them.")
        effort = effort if effort is not None else body.reasoning_effort
        off = {
            "chat_template_kwargs.enable_thinking": (template_kwargs or {}).get("enable_thinking") is False,
            "thinking.type": thinking is not None and thinking.type == "disabled",
            "reasoning_effort": effort == "none",
        }
        if any(off.values()):
            name = next(k for k, v in off.items() if v)
            if caps and any(v != 0 for v in caps.values()):
                raise BadRequest(
                    f"{name} turns thinking off, but {next(iter(caps))} asks for a thinking cap; give one of them."
                )
            return ThinkingAsked(cap=0, off=True, field=name)
        if caps:
            name, cap = next(iter(caps.items()))
            return ThinkingAsked(cap=cap, field=name)
        if effort is not None:
            levels = self.defaults.reasoning_effort_caps
            if effort not in levels:
                raise BadRequest(
                    f"reasoning_effort {effort!r} has no cap on this server; use one of none, {', '.join(levels)} "
                    "(s1 serve --reasoning-effort-caps sets them)."
                )
            return ThinkingAsked(cap=levels[effort], field="reasoning_effort", approximate=True)
        return ThinkingAsked()

    def template_kwargs(self, kwargs: dict | None) -> dict:
        kwargs = dict(kwargs or {})
        clash = sorted(set(kwargs) & (self._template_own | {"messages", "conversation"}))
        if clash:
            raise BadRequest(
                f"chat_template_kwargs may not set {', '.join(clash)} (the server sets it); remove "
                f"{'it' if len(clash) == 1 else 'them'}."
            )
        return kwargs

    def render(self, messages: list[dict], kwargs: dict, add_generation_prompt: bool = True) -> str:
        """The chat template's text for `messages`; a template that refuses them (say, roles that do not
        alternate) is the client's 400, in the template's own words."""
        try:
            return render_chat(self.tokenizer, messages, add_generation_prompt, **kwargs)
        except Exception as exc:  # jinja's TemplateError and whatever a template raises on purpose
            raise BadRequest(f"The model's chat template refused these messages: {exc}.") from None

    # -- endpoints --------------------------------------------------------------------------------------------
    def chat(self, body: ChatBody) -> list[Job]:
        sampling = self._common(body)
        self.check_sequences(1, body.n)
        kwargs = self.template_kwargs(body.chat_template_kwargs)
        asked = self.thinking(body, kwargs)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        limit_field = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        if max_tokens == 0:
            raise BadRequest("max_tokens must be at least 1.")
        if body.tools and body.tool_choice != "none":
            if not template_defines_tools(self.tokenizer):
                raise BadRequest(
                    "This model's chat template defines no tools, so the model was not taught to call them; remove "
                    "tools, or serve a model whose template renders them (Hermes/Qwen style <tool_call>).",
                    param="tools",
                )
            kwargs["tools"] = body.tools
        messages = [m.for_template() for m in body.messages]
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        grammar = self.grammar(body.response_format)
        if grammar is not None:  # the JSON is the whole answer: no answer prefix before it
            body = body.model_copy(update={"answer_prefix": ""})
        jobs = self._conversation(body, messages, kwargs, asked, max_tokens, limit_field, sampling, logprobs)
        return [replace(job, request=replace(job.request, grammar=grammar)) for job in jobs]

    def grammar(self, response_format: dict | None, field: str = "response_format") -> str | None:
        """The grammar for the answer that `response_format` asks for (OpenAI's shapes: json_object, or
        json_schema with its `schema` under `json_schema`); None for text."""
        kind = (response_format or {}).get("type", "text")
        if kind == "text":
            return None
        schema = None
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise BadRequest(f"{field} json_schema needs its schema, a JSON schema object; add it.", param=field)
        from s1.engines.structured import json_grammar

        try:
            return json_grammar(schema)
        except UserError as exc:
            raise BadRequest(str(exc), param=field) from None

    def responses(self, body: ResponsesBody) -> list[Job]:
        """The Responses API: `instructions` and `input` as a conversation, one choice."""
        sampling = self._common(body)
        if body.tools:
            raise BadRequest("tools are not supported by s1 serve's Responses API; remove them.")
        fmt = (body.text or {}).get("format") or {"type": "text"}
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            raise BadRequest(
                f"text.format {kind!r} is not supported; use text, json_object or json_schema.", param="text.format"
            )
        grammar = None
        if kind != "text":
            if not self.spec.logprobs or body.answer_prefix:
                raise BadRequest(
                    f"text.format {kind} needs an in-process engine (--engine {_logit_engines()}) and no "
                    "answer_prefix; remove one of them.",
                    param="text.format",
                )
            # the Responses API puts the schema beside the type; chat nests it under json_schema
            grammar = self.grammar({"type": kind, "json_schema": {"schema": fmt.get("schema")}}, "text.format")
            body = body.model_copy(update={"answer_prefix": ""})
        kwargs = self.template_kwargs(body.chat_template_kwargs)
        effort = body.reasoning.effort if body.reasoning is not None else None
        asked = self.thinking(body, kwargs, effort)
        messages = response_messages(body)
        max_tokens = body.max_output_tokens if body.max_output_tokens is not None else body.max_tokens
        limit_field = "max_output_tokens" if body.max_output_tokens is not None else "max_tokens"
        jobs = self._conversation(body, messages, kwargs, asked, max_tokens, limit_field, sampling, None)
        return [replace(job, request=replace(job.request, grammar=grammar)) for job in jobs]

    def _conversation(self, body, messages, kwargs, asked, max_tokens, limit_field, sampling, logprobs) -> list[Job]:
        """A conversation's prompt with thinking opened, or, with thinking off, with an empty thinking block
        already closed (as Qwen3's template does for `enable_thinking: false`) and the answer generated plainly."""
        if asked.off:
            kwargs.setdefault("enable_thinking", False)
        text = self.render(messages, kwargs)
        self.check_fits(text, "conversation")
        fmt = self.tokens.fmt
        if not fmt.thinks:  # `--format none`: the template's plain answer, no thinking block opened
            forcing = self.forcing(body, max_tokens, 0)
            prompts, plain = [(text, encode(self.tokenizer, text))], True
        elif not asked.off:
            prompt = open_thinking(text, fmt)
            forcing = self.forcing(body, max_tokens, asked.cap)
            prompts, plain = [(prompt, encode(self.tokenizer, prompt))], False
        else:
            forcing = self.forcing(body, max_tokens, 0)
            if text.rstrip().endswith(fmt.think_end.strip()):  # the template closed the thinking block itself
                prompts = [(text, encode(self.tokenizer, text))]
            else:
                opened = open_thinking(text, fmt)
                ids = encode(self.tokenizer, opened)
                closed = list(self.tokens.forced_end("", self.tokens.ends_with_newline(ids[-1])))
                prompts = [(opened + self.tokenizer.decode(closed, skip_special_tokens=False), ids + closed)]
            plain = True
        words = {"max_thinking_tokens": asked.field, "max_tokens": limit_field}
        jobs = self._jobs(body, prompts, forcing, sampling, plain, logprobs, None, words, asked.approximate)
        show = body.include_reasoning and not asked.off
        return [replace(job, show_reasoning=show) for job in jobs]

    def completion(self, body: CompletionBody) -> list[Job]:
        sampling = self._common(body)
        prompts = self._prompts(body.prompt, body.n)
        if body.max_tokens == 0 and not body.echo:
            raise BadRequest("max_tokens must be at least 1 (0 only with echo, to score the prompt).")
        asked = self.thinking(body)
        budget_asked = any(getattr(body, f) is not None for f in BUDGET_FIELDS + THINKING_ALIASES) or (
            not asked.off and (body.thinking is not None or body.reasoning_effort is not None)
        )
        forced = body.budget_forcing
        if asked.off and forced:
            raise BadRequest(f"{asked.field} turns thinking off, but budget_forcing: true asks for it; remove one.")
        if forced is None:  # no thinking asked for is a plain continuation
            forced = not asked.off and (budget_asked or all(self._inside_thinking(text) for text, _ in prompts))
        if forced:
            if body.echo or body.logprobs is not None:
                raise BadRequest(
                    "echo and logprobs score plain continuations; drop the budget fields or set budget_forcing: false."
                )
            prompts = [self._open(text, ids) for text, ids in prompts]
            forcing = self.forcing(body, body.max_tokens, asked.cap)
            words = {"max_thinking_tokens": asked.field}
            jobs = self._jobs(body, prompts, forcing, sampling, False, None, None, words, asked.approximate)
            return [replace(job, show_reasoning=body.include_reasoning) for job in jobs]
        if budget_asked:
            why = f"{asked.field} turns thinking off" if asked.off else "budget_forcing: false"
            raise BadRequest(f"{why}, which cannot be combined with budget fields; remove one of them.")
        limit = self.defaults.plain_max_tokens(body)
        forcing = BudgetForcing(max_answer_tokens=max(limit, 1), max_tokens=limit)
        k = body.logprobs
        return self._jobs(body, prompts, forcing, sampling, True, k, k if body.echo and k is not None else None)

    def _jobs(
        self,
        body,
        prompts: list[tuple[str, list[int]]],
        forcing: BudgetForcing,
        sampling: Sampling,
        plain: bool,
        logprobs: int | None,
        prompt_logprobs: int | None,
        words: dict[str, str] | None = None,
        approximate: bool = False,
    ) -> list[Job]:
        """One job per choice of each prompt. A setting the engine refuses (a cap the context cannot hold) is a
        400 naming the request's own field (`words`: setting -> field); an effort level's cap that the context
        cannot hold becomes what the context leaves, as effort levels are approximate by nature."""
        stop = getattr(body, "stop", None) or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        stream = Stream(
            stop=stop,
            include_stop=getattr(body, "include_stop_str_in_output", False),
            skip_special_tokens=getattr(body, "skip_special_tokens", True),
        )
        n = getattr(body, "n", 1)
        jobs = []
        for p, (text, ids) in enumerate(prompts):
            for j in range(n):
                # the n choices of a seeded request differ, and never repeat another seed's (derive_seed)
                s = replace(sampling, seed=derive_seed(sampling.seed, j))
                options = dict(
                    plain=plain,
                    stop_token_ids=frozenset(getattr(body, "stop_token_ids", None) or ()),
                    logprobs=logprobs,
                    prompt_logprobs=prompt_logprobs,
                    min_tokens=getattr(body, "min_tokens", 0),
                )
                try:
                    request = prepare_ids(self.tokens, self.engine.context_length, text, ids, forcing, s, **options)
                except UserError as exc:
                    if not (approximate and "max_thinking_tokens" in exc.settings):
                        word = (words or {}).get
                        param = word(exc.settings[0], exc.settings[0]) if exc.settings else None
                        raise BadRequest(exc.worded(lambda name: word(name, name)), param=param) from None
                    forcing = replace(forcing, max_thinking_tokens=None)
                    request = prepare_ids(self.tokens, self.engine.context_length, text, ids, forcing, s, **options)
                jobs.append(Job(index=len(jobs), request=request, stream=stream, prompt_index=p))
        return jobs

    def _prompts(self, prompt, n: int = 1) -> list[tuple[str, list[int]]]:
        """vLLM's four prompt forms: a string, a list of strings, token ids, a list of token-id lists."""
        if isinstance(prompt, str) or (prompt and all(isinstance(t, int) for t in prompt)):
            prompt = [prompt]
        if not prompt:
            raise BadRequest("The prompt is empty; send text or token ids.")
        if len(prompt) > MAX_PROMPTS:
            raise BadRequest(f"At most {MAX_PROMPTS} prompts per request; split the batch.", param="prompt")
        self.check_sequences(len(prompt), n)
        out = []
        for p in prompt:
            if isinstance(p, str):
                if not p:
                    raise BadRequest("A prompt is empty; send text or token ids.")
                self.check_fits(p, "prompt")
                out.append((p, encode(self.tokenizer, p)))
            else:
                if not p:
                    raise BadRequest("A prompt is an empty list of token ids.")
                for t in p:
                    self.check_id(t, "prompt")
                out.append((self.tokenizer.decode(p, skip_special_tokens=False), list(p)))
        return out

    def _inside_thinking(self, text: str) -> bool:
        """Whether the prompt ends inside an open thinking block (its last thinking start is not closed)."""
        fmt = self.tokens.fmt
        start = text.rfind(fmt.think_start.strip())
        return start >= 0 and text.rfind(fmt.think_end) < start

    def _open(self, text: str, ids: list[int]) -> tuple[str, list[int]]:
        if self._inside_thinking(text):
            return text, ids
        opened = open_thinking(text, self.tokens.fmt)
        return opened, ids + encode(self.tokenizer, opened[len(text) :])


def response_messages(body: ResponsesBody) -> list[dict]:
    """A Responses API request as chat messages: `instructions` as the system message, then each input
    message; a replayed reasoning item's text goes to the assistant message after it, as a chat client sends
    `reasoning_content` (the chat template decides whether past reasoning is rendered)."""
    messages = [{"role": "system", "content": body.instructions}] if body.instructions else []
    if isinstance(body.input, str):
        return messages + [{"role": "user", "content": body.input}]
    if not body.input:
        raise BadRequest("input is empty; send text or a list of messages.")
    reasoning: list[str] = []
    for i, item in enumerate(body.input):
        if item.type == "reasoning":
            reasoning.append(item.text() or "".join(p.text for p in item.summary))
            continue
        if item.type != "message" or item.role is None:
            raise BadRequest(
                f"input[{i}] is a {item.type!r} item; s1 serve's Responses API takes messages and reasoning items."
            )
        message = Message(role=item.role, content=item.text())
        if item.role == "assistant" and reasoning:
            message.reasoning_content = "".join(reasoning)
        reasoning = [] if item.role == "assistant" else reasoning
        messages.append(message.for_template())
    return messages
