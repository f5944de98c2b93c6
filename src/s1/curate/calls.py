"""Model calls for curation, behind a cache that survives crashes.

Every call is keyed by the role's model, engine and settings, the prompt and the retry number; its
reply is stored the moment it arrives (one SQLite transaction), so a re-run sends only the calls that
never came back. The engines are the project's own (`hf`, `reprefill`, `llamacpp`, `remote`): the
remote engine spreads calls over its base URLs and retries each HTTP request with backoff; a call that
still fails is retried here `role.retries` times as a whole, then marked failed.

The `python` engine calls a function instead of a model (`model: package.module:function`), for a
programmatic teacher (`s1 demo`'s), a rule-based solver or a client of a service s1 has no engine for.
The function takes the user message and a `seed` keyword and returns {"thinking": ..., "answer": ...};
its replies are cached and counted like any model's. It gets the message only (no system prompt, no
choice list to constrain to) and is called once per ask: a call that raises is marked failed, not retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from s1.core.errors import UserError, first_line
from s1.core.forcing import BudgetForcing
from s1.core.formats import encode
from s1.core.loader import load_function
from s1.core.rundir import identity_hash
from s1.curate.config import Role, worded
from s1.curate.store import Store
from s1.engines import load_engine
from s1.engines.base import make_request, prepare_ids

log = logging.getLogger("s1.curate")

RETRY_TEMPERATURE = 0.7
"""A retry of an unusable reply samples at least this hot with a new seed: greedy would repeat it."""


@dataclass(frozen=True)
class Ask:
    """One call: the user message; `think` for a teacher trace, else a plain chat reply.

    With `choices`, the reply must be one of them, written right after `reply_prefix` (constrained
    decoding where the engine allows it, a free reply otherwise)."""

    message: str
    think: bool = False
    attempt: int = 0
    choices: tuple[str, ...] = ()
    reply_prefix: str = ""


@dataclass
class Tally:
    cached: int = 0
    sent: int = 0
    failed: int = 0

    def as_dict(self) -> dict:
        return {"from_cache": self.cached, "sent": self.sent, "failed": self.failed}


@dataclass
class Engines:
    """Loaded engines, shared by roles that name the same model and engine (load each once per run)."""

    loaded: dict = field(default_factory=dict)

    @staticmethod
    def _key(role: Role) -> tuple:
        return (role.engine, role.model, role.format, tuple(role.base_urls), role.remote_mode)

    def put(self, role: Role, engine) -> None:
        """Use `engine` (loaded already) for every role that names the same engine, model and format."""
        self.loaded[self._key(role)] = engine

    def get(self, role: Role):
        key = self._key(role)
        if key not in self.loaded and role.engine == "python":
            self.loaded[key] = FunctionEngine.load(role.model)
        if key not in self.loaded:
            log.info("loading %s (%s)", role.model, role.engine)
            self.loaded[key] = load_engine(
                role.model,
                role.engine,
                role.format,
                base_urls=role.base_urls or None,
                remote_mode=role.remote_mode,
                parallel=role.concurrency,
            )
        return self.loaded[key]

    def close(self) -> None:
        for engine in self.loaded.values():
            backend = getattr(engine, "backend", None)
            if backend is not None and hasattr(backend, "close"):
                backend.close()
        self.loaded.clear()


class FunctionEngine:
    """A Python function in a role's place: called once per ask, in this process."""

    def __init__(self, function: Callable[..., dict], name: str):
        self.function, self.name = function, name

    @classmethod
    def load(cls, target: str) -> FunctionEngine:
        return cls(load_function(target, "the python role"), target)

    def reply(self, message: str, seed: int) -> dict:
        reply = self.function(message, seed=seed)
        if not isinstance(reply, dict) or not isinstance(reply.get("answer"), str):
            raise ValueError(f"{self.name} returned {type(reply).__name__}, not a dict with a text 'answer'")
        return {"thinking": str(reply.get("thinking") or ""), "answer": reply["answer"]}


class Caller:
    """One role's model behind the call cache."""

    def __init__(self, name: str, role: Role, store: Store, engines: Engines):
        self.name, self.role, self.store, self.engines = name, role, store, engines
        self.tally = Tally()
        self._role_key = role.key()

    def key(self, ask: Ask) -> str:
        return identity_hash({"role": self._role_key, "ask": ask.__dict__})

    def ask(self, asks: list[Ask], on_reply: Callable[[int], None] | None = None) -> list[dict | None]:
        """Replies aligned with `asks` (None where the call failed); cached replies cost no call.
        `on_reply(n)` is told each time n more asks have their answer (for progress bars)."""
        keys = [self.key(a) for a in asks]
        first: dict[str, Ask] = {}
        copies: dict[str, int] = {}
        for key, ask in zip(keys, asks):
            first.setdefault(key, ask)
            copies[key] = copies.get(key, 0) + 1
        replies: dict[str, dict | None] = dict(self.store.replies(list(first)))
        self.tally.cached += len(replies)
        if on_reply and replies:
            on_reply(sum(copies[k] for k in replies))
        todo = [(k, a) for k, a in first.items() if k not in replies]
        if todo:
            try:
                self._send_all(todo, replies, copies, on_reply)
            except UserError as exc:  # about a setting: named by its key in the config (roles.teacher.base_urls)
                raise UserError(worded(exc, self.where)) from None
        return [replies.get(k) for k in keys]

    @property
    def where(self) -> str:
        """This role's place in the config: roles.teacher, roles.solvers.0 ..."""
        return f"roles.solvers.{self.name[6:]}" if self.name.startswith("solver") else f"roles.{self.name}"

    def _send_all(self, todo: list, replies: dict, copies: dict, on_reply) -> None:
        """Call the model for the asks no cache answered, filling `replies` as they arrive."""
        engine = self.engines.get(self.role)

        def done(key: str, reply: dict | None) -> None:
            replies[key] = reply
            if on_reply:
                on_reply(copies[key])

        if isinstance(engine, FunctionEngine):
            for key, ask in todo:
                done(key, self._call_function(engine, key, ask))
            return
        constrained = [(k, a) for k, a in todo if a.choices and self.role.constrained and hasattr(engine, "choose")]
        chosen = {k for k, _ in constrained}
        free = [(k, a) for k, a in todo if k not in chosen]
        for key, ask in constrained:
            done(key, self._choose(engine, key, ask))
        for start in range(0, len(free), self.role.concurrency):
            self._generate(engine, free[start : start + self.role.concurrency], done)

    # -- the two ways of calling -------------------------------------------------------------------
    def _request(self, engine, ask: Ask):
        role = self.role
        temperature = role.temperature if ask.attempt == 0 else max(role.temperature, RETRY_TEMPERATURE)
        sampling = role.sampling(ask.attempt, temperature)
        if ask.think:
            forcing = role.forcing()
            return make_request(
                engine.tokenizer,
                engine.format_tokens,
                engine.context_length,
                ask.message,
                forcing,
                sampling,
                role.system,
            )
        prompt = self._plain_prompt(engine, ask)
        forcing = BudgetForcing(max_answer_tokens=role.max_tokens)
        return prepare_ids(
            engine.format_tokens,
            engine.context_length,
            prompt,
            encode(engine.tokenizer, prompt),
            forcing,
            sampling,
            plain=True,
        )

    def _plain_prompt(self, engine, ask: Ask) -> str:
        messages = ([{"role": "system", "content": self.role.system}] if self.role.system else []) + [
            {"role": "user", "content": ask.message}
        ]
        tokenizer = engine.tokenizer
        if getattr(tokenizer, "chat_template", None):
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            prompt = "\n".join(m["content"] for m in messages) + "\n"
        return prompt + ask.reply_prefix

    def _choose(self, engine, key: str, ask: Ask) -> dict | None:
        prompt = self._plain_prompt(engine, ask)
        ids = encode(engine.tokenizer, prompt)
        options = [encode(engine.tokenizer, " " + c) for c in ask.choices]
        self.store.call_sent(key, self.name, {"prompt": prompt, "choices": list(ask.choices)})
        self.tally.sent += 1
        try:
            reply = {"answer": ask.choices[engine.choose(ids, options)], "constrained": True}
        except Exception as exc:  # noqa: BLE001 - one failed call must not stop the stage
            return self._failed(key, exc)
        self.store.call_done(key, reply)
        return reply

    def _call_function(self, engine: FunctionEngine, key: str, ask: Ask) -> dict | None:
        self.store.call_sent(key, self.name, {"message": ask.message})
        self.tally.sent += 1
        try:
            reply = engine.reply(ask.message, seed=self.role.sampling(ask.attempt).seed)
        except Exception as exc:  # noqa: BLE001 - one failed call must not stop the stage
            return self._failed(key, exc)
        self.store.call_done(key, reply)
        return reply

    def _generate(self, engine, chunk: list[tuple[str, Ask]], done: Callable) -> None:
        """Send a chunk together; calls that fail are retried alone, so one bad call spares its neighbours."""
        batch = []
        for key, ask in chunk:
            try:
                batch.append((key, self._request(engine, ask)))
            except UserError as exc:  # too long for the context: a property of the question, not worth a retry
                self.store.call_sent(key, self.name, {"message": ask.message})
                done(key, self._failed(key, exc))
        left, error = self._send(engine, batch, done)
        for item in left:
            for attempt in range(self.role.retries):
                log.warning("%s: a call failed (%s); retry %d of %d", self.name, error, attempt + 1, self.role.retries)
                time.sleep(min(2**attempt, 30))
                rest, error = self._send(engine, [item], done)
                if not rest:
                    break
            else:
                done(item[0], self._failed(item[0], error))

    def _send(self, engine, batch: list, done: Callable) -> tuple[list, Exception | None]:
        """Generate for (key, request) pairs; returns the pairs that did not finish and the error."""
        if not batch:
            return [], None
        for key, request in batch:
            self.store.call_sent(key, self.name, {"prompt": request.prompt})
            self.tally.sent += 1
        finished: set[int] = set()

        def completed(i: int, c) -> None:
            reply = {
                "thinking": c.thinking,
                "answer": c.answer,
                "thinking_tokens": c.thinking_tokens,
                "answer_tokens": c.answer_tokens,
                "finish_reason": c.finish_reason,
            }
            self.store.call_done(batch[i][0], reply)
            finished.add(i)
            done(batch[i][0], reply)

        try:
            engine.generate([r for _, r in batch], batch_size=self.role.concurrency, on_completion=completed)
            return [], None
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried alone, then marked failed
            return [b for i, b in enumerate(batch) if i not in finished], exc

    def _failed(self, key: str, exc: BaseException) -> None:
        if isinstance(exc, UserError):
            exc = UserError(worded(exc, self.where))
        message = first_line(exc, 500)
        self.store.call_failed(key, message)
        self.tally.failed += 1
        return None
