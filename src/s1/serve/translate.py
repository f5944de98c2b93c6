"""Request bodies -> engine `Request`s: what each OpenAI/vLLM field means for one served model.

A body becomes one `Job` per choice (n choices of each prompt); refusals are `BadRequest`s whose
message is the sentence the client gets with its 400. Which fields an engine can honour (logprobs,
min_tokens) is a capability of the engine (engines/registry.py), not a list kept here.
"""

from __future__ import annotations

from dataclasses import dataclass

from s1.core.forcing import BudgetForcing
from s1.core.formats import encode, open_thinking, render_messages
from s1.core.sampling import Sampling, derive_seed
from s1.engines.base import Request, prepare_ids
from s1.engines.registry import EngineSpec, names
from s1.serve.protocol import (
    BUDGET_FIELDS,
    MAX_PROMPTS,
    BadRequest,
    ChatBody,
    CompletionBody,
    Defaults,
)
from s1.serve.schedulers import Stream


@dataclass
class Job:
    """One choice to generate: the engine request, how its text is cut, and its index in the response."""

    index: int
    request: Request
    stream: Stream
    prompt_index: int


def prompt_tokens(jobs: list[Job]) -> int:
    """The prompt tokens of a request: each prompt once, however many choices it has."""
    seen = {j.prompt_index: len(j.request.prompt_token_ids) for j in jobs}
    return sum(seen.values())


def _logit_engines() -> str:
    return " or ".join(names(serves=True, logprobs=True))


def refuse_unsupported(body: ChatBody | CompletionBody, engine: EngineSpec) -> None:
    """Fields that are accepted only at their neutral values, and options only some engines have."""
    neutral = {
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "repetition_penalty": 1.0,
        "repeat_penalty": 1.0,
        "ignore_eos": False,
    }
    for name, value in neutral.items():
        if getattr(body, name) != value:
            raise BadRequest(f"{name}={getattr(body, name)!r} is not supported by s1 serve; leave it at {value!r}.")
    if body.top_k not in (None, 0, -1):
        raise BadRequest("top_k is not supported by s1 serve; use top_p (or leave top_k at -1).")
    if body.logit_bias:
        raise BadRequest("logit_bias is not supported by s1 serve; remove it.")
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
        if body.tools or body.tool_choice not in (None, "none", "auto"):
            raise BadRequest("tools and tool_choice are not supported by s1 serve; remove them.")
        if body.response_format and body.response_format.get("type") != "text":
            raise BadRequest(
                f"response_format {body.response_format.get('type')!r} is not supported "
                "(s1 serve has no guided decoding); use {'type': 'text'} or remove it."
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

    def __init__(self, engine, model_name: str, spec: EngineSpec, defaults: Defaults):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.tokens = engine.format_tokens
        self.model_name = model_name
        self.spec = spec
        self.defaults = defaults
        self.vocab = len(engine.tokenizer)

    def _common(self, body: ChatBody | CompletionBody) -> Sampling:
        if body.model not in (None, "", self.model_name):
            raise BadRequest(f"Model {body.model!r} is not served here; use {self.model_name!r} (see /v1/models).")
        refuse_unsupported(body, self.spec)
        for t in body.stop_token_ids or []:
            self._check_id(t, "stop_token_ids")
        return self.defaults.sampling_for(body)

    def _check_id(self, token, where: str) -> None:
        if not 0 <= token < self.vocab:
            raise BadRequest(
                f"{where} holds token id {token}, outside this model's vocabulary (0 to {self.vocab - 1})."
            )

    def forcing(
        self, body: ChatBody | CompletionBody, max_tokens: int | None, max_thinking: int | None
    ) -> BudgetForcing:
        return self.defaults.forcing_for(body, max_tokens, max_thinking)

    def _jobs(
        self,
        body: ChatBody | CompletionBody,
        prompts: list[tuple[str, list[int]]],
        forcing: BudgetForcing,
        sampling: Sampling,
        plain: bool,
        logprobs: int | None,
        prompt_logprobs: int | None,
    ) -> list[Job]:
        stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
        stream = Stream(
            stop=stop, include_stop=body.include_stop_str_in_output, skip_special_tokens=body.skip_special_tokens
        )
        jobs = []
        for p, (text, ids) in enumerate(prompts):
            for j in range(body.n):
                # n samples of one seeded request differ: the k-th draws from seed + k (greedy ones are equal).
                s = Sampling(sampling.temperature, sampling.top_p, derive_seed(sampling.seed, j))
                request = prepare_ids(
                    self.tokens,
                    self.engine.context_length,
                    text,
                    ids,
                    forcing,
                    s,
                    plain=plain,
                    stop_token_ids=frozenset(body.stop_token_ids or ()),
                    logprobs=logprobs,
                    prompt_logprobs=prompt_logprobs,
                    min_tokens=body.min_tokens,
                )
                jobs.append(Job(index=len(jobs), request=request, stream=stream, prompt_index=p))
        return jobs

    def chat(self, body: ChatBody) -> list[Job]:
        sampling = self._common(body)
        max_thinking = body.max_thinking_tokens
        if max_thinking is None and body.reasoning_effort is not None:
            max_thinking = self._effort(body.reasoning_effort)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
        prompt = render_messages(self.tokenizer, messages, self.tokens.fmt)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        if max_tokens == 0:
            raise BadRequest("max_tokens must be at least 1.")
        forcing = self.forcing(body, max_tokens, max_thinking)
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        return self._jobs(body, [(prompt, encode(self.tokenizer, prompt))], forcing, sampling, False, logprobs, None)

    def _effort(self, effort: str) -> int:
        caps = {"none": 0, **self.defaults.reasoning_effort_caps}
        if effort not in caps:
            raise BadRequest(f"reasoning_effort must be one of {', '.join(caps)}, got {effort!r}.")
        return caps[effort]

    def completion(self, body: CompletionBody) -> list[Job]:
        sampling = self._common(body)
        prompts = self._prompts(body.prompt)
        if body.max_tokens == 0 and not body.echo:
            raise BadRequest("max_tokens must be at least 1 (0 only with echo, to score the prompt).")
        forced = body.budget_forcing
        if forced is None:
            asked = any(getattr(body, f) is not None for f in BUDGET_FIELDS)
            forced = asked or all(self._inside_thinking(text) for text, _ in prompts)
        if forced:
            if body.echo or body.logprobs is not None:
                raise BadRequest(
                    "echo and logprobs score plain continuations; drop the budget fields or set budget_forcing: false."
                )
            prompts = [self._open(text, ids) for text, ids in prompts]
            forcing = self.forcing(body, body.max_tokens, body.max_thinking_tokens)
            return self._jobs(body, prompts, forcing, sampling, False, None, None)
        if any(getattr(body, f) is not None for f in BUDGET_FIELDS):
            raise BadRequest("budget_forcing: false cannot be combined with budget fields; remove one of them.")
        limit = self.defaults.plain_max_tokens(body)
        forcing = BudgetForcing(max_answer_tokens=max(limit, 1), max_tokens=limit)
        k = body.logprobs
        return self._jobs(body, prompts, forcing, sampling, True, k, k if body.echo and k is not None else None)

    def _prompts(self, prompt) -> list[tuple[str, list[int]]]:
        """vLLM's four prompt forms: a string, a list of strings, token ids, a list of token-id lists."""
        if isinstance(prompt, str) or (prompt and all(isinstance(t, int) for t in prompt)):
            prompt = [prompt]
        if not prompt:
            raise BadRequest("The prompt is empty; send text or token ids.")
        if len(prompt) > MAX_PROMPTS:
            raise BadRequest(f"At most {MAX_PROMPTS} prompts per request; split the batch.")
        out = []
        for p in prompt:
            if isinstance(p, str):
                if not p:
                    raise BadRequest("A prompt is empty; send text or token ids.")
                out.append((p, encode(self.tokenizer, p)))
            else:
                if not p:
                    raise BadRequest("A prompt is an empty list of token ids.")
                for t in p:
                    self._check_id(t, "prompt")
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
