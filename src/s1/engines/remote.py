"""Remote engine: budget forcing against any OpenAI-compatible server through the re-prefill loop.

Each round is one `/v1/completions` call. A server is used in one of two modes, fixed when the engine
starts and never changed afterwards:

- ids: the prompt goes as token ids and the generated ids come back (vLLM's `return_token_ids`,
  `stop_token_ids`; `s1 serve` too), so nothing is re-tokenized.
- text: for servers that take only text (llama.cpp's, many others) the prompt is decoded, the stop
  tokens become stop strings, and the reply is encoded with the model's tokenizer.

`auto` asks each server once, with a one-token test completion, which mode it takes.

Several servers run data-parallel: each new sequence goes to the server with the fewest sequences in
flight and stays there for all its rounds, so the server's prefix cache makes every re-prefill cheap.
A failing call is retried on the same server with exponential backoff (timeouts, connection errors,
HTTP 429 and 5xx, honouring Retry-After); once its tries there are spent, the sequence moves to
another server and stays there.

One concern, so one module past 400 lines: driving remote OpenAI-compatible servers (modes, rounds, spread).
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import random
import sys
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import httpx

from s1.core.errors import UserError, named
from s1.core.formats import FormatTokens, ThinkingFormat, encode
from s1.engines.reprefill import Call, ReprefillEngine, Sequence

MODES = ("auto", "ids", "text")
log = logging.getLogger("s1.remote")

DOWN_FOR = 30.0
"""Seconds a server whose tries were spent is passed over for new sequences (while others are up)."""
AFFINITIES = 4096
"""Searches whose server is remembered (each search's nodes go to one server)."""


class RemoteError(RuntimeError):
    """A remote call failed for good: the message says which servers failed and how."""


class _Spent(Exception):
    """One server's tries are spent for a call (retryable failures only)."""

    def __init__(self, url: str, reason: str, status: int | None = None):
        super().__init__(reason)
        self.url, self.reason, self.status = url, reason, status


def server_message(response: httpx.Response) -> str:
    """The error text a server put in its reply (OpenAI, vLLM, FastAPI shapes), on one line."""
    try:
        data = response.json()
    except ValueError:
        data = None
    text = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            text = error.get("message")
        elif isinstance(error, str):
            text = error
        text = text or data.get("message") or data.get("detail")
    if text is None:
        text = response.text or response.reason_phrase
    text = " ".join(str(text).split())
    return text[:500] + ("..." if len(text) > 500 else "")


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host unreachable"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def adds_bos(tokenizer) -> bool:
    """Whether encoding text with the tokenizer's defaults puts a BOS token in front (as servers do)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    try:
        ids = tokenizer("a").input_ids
    except Exception:  # a tokenizer without the call form: assume it adds nothing
        return False
    return bool(ids) and ids[0] == bos


def prompt_text(tokenizer, token_ids: list[int], strip_bos: bool) -> str:
    """The text a text-only server must receive to see `token_ids` again.

    A server whose tokenizer adds BOS adds it to this text too, so a leading BOS in the ids is left out
    of the text (else the model would see two).
    """
    if strip_bos and token_ids and token_ids[0] == tokenizer.bos_token_id:
        token_ids = token_ids[1:]
    return tokenizer.decode(token_ids, skip_special_tokens=False)


class RemoteBackend:
    """`Backend` over OpenAI-compatible servers: `complete(calls)` sends the calls concurrently."""

    def __init__(
        self,
        base_urls: list[str],
        tokenizer,
        format_tokens: FormatTokens,
        model: str | None = None,
        mode: str = "auto",
        timeout: float = 600.0,
        retries: int = 4,
        backoff: float = 0.5,
        backoff_cap: float = 8.0,
    ):
        check_mode(mode)
        if not base_urls:
            raise UserError(
                f"The remote engine needs at least one server in {named('base_urls')} (an OpenAI-compatible server)."
            )
        self.urls = list(dict.fromkeys(_normalize(u) for u in base_urls))
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self.tokenizer = tokenizer
        self.tokens = format_tokens
        self.retries, self.backoff, self.backoff_cap = max(0, retries), backoff, backoff_cap
        self._random = random.Random()
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self.usage_prompt_tokens = 0
        """The servers' own `usage.prompt_tokens`, summed over every reply (what they say they read)."""
        self._pinned: dict[str, weakref.WeakSet] = {u: weakref.WeakSet() for u in self.urls}
        self._down_until = {u: 0.0 for u in self.urls}
        self._affinity: OrderedDict[str, str] = OrderedDict()
        """A search's key -> the server its nodes went to (the most recent AFFINITIES kept)."""
        self.strip_bos = adds_bos(tokenizer)
        self.model, self.max_model_len = self._check_models(model)
        self.modes: dict[str, str] = {}
        for url in self.urls:
            self.modes[url] = self._probe(url) if mode == "auto" else mode

    # --- load time ---------------------------------------------------------------------------------

    def _check_models(self, model: str | None) -> tuple[str, int | None]:
        """Every server must answer /v1/models and serve `model` (default: the first server's first)."""
        lengths = []
        for url in self.urls:
            try:
                r = self._post_or_get(url, "GET", "/v1/models", None, retry_connect=False, timeout=30.0)
            except _Spent as exc:
                raise UserError(
                    f"Cannot reach the server at {url} ({exc.reason}); check {named('base_urls')} and that the server "
                    "runs."
                ) from None
            except RemoteError as exc:
                raise UserError(
                    f"The server at {url} refused to list its models ({exc}); is it an OpenAI-compatible server?"
                ) from None
            try:
                entries = r.json()["data"]
                served = [str(m["id"]) for m in entries]
            except (ValueError, KeyError, TypeError):
                raise UserError(
                    f"{url}/v1/models did not answer with an OpenAI model list; point {named('base_urls')} at an "
                    "OpenAI-compatible server (such as http://host:8000/v1)."
                ) from None
            if not served:
                raise UserError(f"The server at {url} lists no model at /v1/models; start it with a model loaded.")
            if model is None:
                model = served[0]
            if model not in served:
                raise UserError(
                    f"The server at {url} does not serve model {model!r}; it serves {', '.join(map(repr, served))}. "
                    "Use one of those names, the same on every server."
                )
            entry = entries[served.index(model)]
            if isinstance(entry, dict) and isinstance(entry.get("max_model_len"), int):
                lengths.append(entry["max_model_len"])
        return model, min(lengths) if lengths else None

    def _probe(self, url: str) -> str:
        """One tiny completion with token ids: a 200 reply carrying `token_ids` means ids mode.

        A refusal (4xx) means text mode. Busy or failing servers (429, 5xx, timeouts) are retried, so a
        passing failure does not decide the mode; but a server that answers HTTP 500 twice (llama-cpp-python
        reports a prompt of token ids so) gets the same test with text, and takes text if that works.
        """
        ids = encode(self.tokenizer, "Hello")[:4] or [self.tokenizer.eos_token_id or 0]
        body = {
            "model": self.model,
            "prompt": ids,
            "max_tokens": 1,
            "temperature": 0.0,
            "return_token_ids": True,
            "budget_forcing": False,
        }
        try:
            r = self._post_or_get(url, "POST", "/v1/completions", body, quiet=True, repeated_500=2)
            choice = r.json()["choices"][0]
            mode = "ids" if isinstance(choice.get("token_ids"), list) else "text"
        except RemoteError:  # a 4xx: the server does not take token ids
            mode = "text"
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            mode = "text"
        except _Spent as exc:
            if exc.status != 500:
                raise UserError(
                    f"The server at {url} did not answer a test completion ({exc.reason}); check that it is healthy."
                ) from None
            text = {
                "model": self.model,
                "prompt": "Hello",
                "max_tokens": 1,
                "temperature": 0.0,
                "budget_forcing": False,
            }
            try:
                self._post_or_get(url, "POST", "/v1/completions", text)
            except (_Spent, RemoteError) as again:
                raise UserError(
                    f"The server at {url} failed a test completion with token ids ({exc.reason}) and with text "
                    f"({getattr(again, 'reason', again)}); check that it is healthy."
                ) from None
            mode = "text"
        said = (
            "takes token ids (ids mode)" if mode == "ids" else "takes text only (text mode: replies are re-tokenized)"
        )
        print(f"remote: {url} {said}", file=sys.stderr, flush=True)
        return mode

    # --- HTTP with retries -------------------------------------------------------------------------

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Retry-After when the server gave one (capped), else exponential backoff with jitter."""
        if response is not None:
            wait = _retry_after(response.headers.get("retry-after"))
            if wait is not None:
                return min(self.backoff_cap, wait)
        return min(self.backoff_cap, self.backoff * 2**attempt) * (0.5 + 0.5 * self._random.random())

    def _post_or_get(
        self,
        url: str,
        method: str,
        path: str,
        body: dict | None,
        retry_connect: bool = True,
        timeout: float | None = None,
        quiet: bool = False,
        repeated_500: int | None = None,
    ) -> httpx.Response:
        """A 200 reply, after retrying timeouts, connection errors, 429 and 5xx up to `retries` times.

        Raises `RemoteError` at once for any other status, `_Spent` when the tries are used up (or, with
        `repeated_500`, once that many replies were HTTP 500).
        """
        reason, status, errors_500 = "", None, 0
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = self.client.request(
                    method, f"{url}{path}", json=body, timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
                )
            except httpx.UnsupportedProtocol:
                raise UserError(
                    f"{url!r} in {named('base_urls')} is not an http(s) URL; write it as http://host:port/v1."
                ) from None
            except httpx.TransportError as exc:
                reason, status = _transport_reason(exc), None
                if not retry_connect and isinstance(exc, httpx.ConnectError):
                    raise _Spent(url, reason) from None
            else:
                status = response.status_code
                if status == 200:
                    return response
                if status != 429 and status < 500:
                    raise RemoteError(f"{url} rejected the request with HTTP {status}: {server_message(response)}")
                reason = f"HTTP {status}: {server_message(response)}"
                errors_500 += status == 500
                if repeated_500 is not None and errors_500 >= repeated_500:
                    raise _Spent(url, f"{reason}, {attempt + 1} tries", status)
            if attempt == self.retries:
                break
            wait = self._delay(attempt, response)
            if not quiet:
                log.warning(
                    "remote: %s %s; retrying in %.1f s (try %d of %d)", url, reason, wait, attempt + 2, self.retries + 1
                )
            time.sleep(wait)
        tries = self.retries + 1
        raise _Spent(url, f"{reason}, {tries} tr{'y' if tries == 1 else 'ies'}", status)

    # --- servers for sequences ---------------------------------------------------------------------

    def _assign(self, sequence: Sequence, exclude: set[str] = frozenset()) -> str:
        """Pin `sequence` to the up server with the fewest live sequences (round-robin among equals), or to
        the server its affinity went to before (a search's nodes share their prefixes there)."""
        with self._lock:
            now = time.monotonic()
            candidates = [u for u in self.urls if u not in exclude]
            up = [u for u in candidates if self._down_until[u] <= now] or candidates
            turn = next(self._turn)
            n = len(self.urls)
            best = min(up, key=lambda u: (len(self._pinned[u]), (self.urls.index(u) - turn) % n))
            if sequence.affinity is not None:
                best = self._affinity.get(sequence.affinity) if self._affinity.get(sequence.affinity) in up else best
                self._affinity[sequence.affinity] = best
                self._affinity.move_to_end(sequence.affinity)
                while len(self._affinity) > AFFINITIES:
                    self._affinity.popitem(last=False)
            if sequence.server in self._pinned:
                self._pinned[sequence.server].discard(sequence)
            sequence.server = best
            self._pinned[best].add(sequence)
            return best

    @property
    def shares_rounds(self) -> bool:
        """Token ids in and out (every server in ids mode). A text-mode server (llama.cpp's) returns text that
        is re-tokenized here: a round cut at max_tokens n re-reads as other ids than the first n of a longer
        round's text (merges across the cut, n server tokens not n ids), so a branch cut from a longer
        trajectory would not be its setting's sample; there only settings with the trajectory's cap follow it
        (a Wait sweep, whose branches part where a round ended)."""
        return all(mode == "ids" for mode in self.modes.values())

    def complete(self, calls: list[Call]) -> list[list[int]]:
        for call in calls:  # new sequences are placed here, in order, so the spread is deterministic
            if call.sequence.server not in self.modes:
                self._assign(call.sequence)
        if len(calls) == 1:
            return [self._call(calls[0])]
        with ThreadPoolExecutor(max_workers=min(len(calls), 64)) as pool:
            return list(pool.map(self._call, calls))

    def _call(self, call: Call) -> list[int]:
        failed: dict[str, str] = {}
        while True:
            url = call.sequence.server
            try:
                return self._complete(url, call)
            except _Spent as exc:
                failed[url] = exc.reason
                with self._lock:
                    self._down_until[url] = time.monotonic() + DOWN_FOR
            if len(failed) == len(self.urls):
                detail = "; ".join(f"{u} ({r})" for u, r in failed.items())
                raise RemoteError(f"every server failed for this request: {detail}")
            moved = self._assign(call.sequence, exclude=set(failed))
            log.warning("remote: %s failed (%s); sequence %d moves to %s", url, failed[url], call.sequence.id, moved)

    # --- one round ---------------------------------------------------------------------------------

    def _body(self, call: Call, url: str) -> dict:
        s = call.sampling
        # "all tokens" is -1 to vLLM (old versions refuse 0) and 0 to llama.cpp's servers (llama-cpp-python's
        # refuses -1): servers that return token ids are vLLM's kind, text-only ones llama.cpp's
        every_token = -1 if self.modes[url] == "ids" else 0
        body = {
            "model": self.model,
            "max_tokens": call.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            # every sampling setting is sent, at its neutral value too: llama-server's own defaults are not
            # neutral (top_k 40, min_p 0.05, repeat_penalty 1.1)
            "top_k": s.top_k if s.top_k > 0 else every_token,
            "min_p": s.min_p,
            "repetition_penalty": s.repetition_penalty,
            "frequency_penalty": s.frequency_penalty,
            "presence_penalty": s.presence_penalty,
            "budget_forcing": False,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        return body

    def _complete(self, url: str, call: Call) -> list[int]:
        if self.modes[url] == "ids":
            body = {
                **self._body(call, url),
                "prompt": list(call.token_ids),
                "stop_token_ids": sorted(call.stop_ids),
                "return_token_ids": True,
                "skip_special_tokens": False,
                "include_stop_str_in_output": True,
            }
            if call.banned:  # vLLM's min_tokens masks the stop ids (the banned ones among them) for one token
                body["min_tokens"] = 1
        else:
            stops = [
                t for t in (self.tokenizer.decode([i], skip_special_tokens=False) for i in sorted(call.stop_ids)) if t
            ]
            # repeat_penalty is llama.cpp's name for repetition_penalty
            body = {
                **self._body(call, url),
                "prompt": prompt_text(self.tokenizer, call.token_ids, self.strip_bos),
                "stop": stops,
                "repeat_penalty": call.sampling.repetition_penalty,
            }
            if call.banned:  # a bias holds for the whole reply, so this round is the one banned token
                body["logit_bias"] = {str(t): -100 for t in sorted(call.banned)}
                body["max_tokens"] = 1
        r = self._post_or_get(url, "POST", "/v1/completions", body)
        try:
            reply = r.json()
            choice = reply["choices"][0]
            finish, stop_reason = choice.get("finish_reason"), choice.get("stop_reason")
            read = (reply.get("usage") or {}).get("prompt_tokens")
            if isinstance(read, int):
                with self._lock:
                    self.usage_prompt_tokens += read
            if self.modes[url] == "ids":
                ids = choice.get("token_ids")
                if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
                    raise RemoteError(
                        f"{url} answered without token_ids, though it took token ids when the engine "
                        "started; if it was replaced by another server, restart with --remote-mode text."
                    )
            else:
                ids = encode(self.tokenizer, choice.get("text") or "")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise RemoteError(f"{url} sent a reply that is not an OpenAI completion: {r.text[:300]!r}") from None
        return self._ending(list(ids), call, finish, stop_reason)

    def _ending(self, ids: list[int], call: Call, finish_reason: str | None, stop_reason=None) -> list[int]:
        """Normalize a reply to "tokens, then the stop token if one ended it", as the driver expects."""
        ids = ids[: call.max_tokens]
        for j, t in enumerate(ids):
            if t in call.stop_ids:
                return ids[: j + 1]
        if finish_reason == "stop" and len(ids) < call.max_tokens:
            # The stop token was left out of the reply (always so in text mode). vLLM names it in
            # stop_reason (an id, or the stop string); otherwise, for the formats here every trigger
            # leads to the same delimiter, so the delimiter's own first token stands for all of them.
            if isinstance(stop_reason, str):
                stop_reason = next(
                    (t for t in call.stop_ids if self.tokenizer.decode([t], skip_special_tokens=False) == stop_reason),
                    None,
                )
            if isinstance(stop_reason, int) and stop_reason in call.stop_ids:
                ids.append(stop_reason)
            else:
                preferred = [t for t in self.tokens.think_end_ids[:1] if t in call.stop_ids] or sorted(call.stop_ids)
                ids.append(preferred[0])
        return ids

    def close(self) -> None:
        self.client.close()


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"{named('remote_mode')} must be one of {', '.join(MODES)}, got {mode!r}.", value=mode)


def _normalize(url: str) -> str:
    url = url.strip().rstrip("/")
    return url.removesuffix("/v1").rstrip("/")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RemoteEngine(ReprefillEngine):
    @classmethod
    def load(
        cls,
        name: str,
        base_urls: list[str],
        fmt: str | ThinkingFormat = "s1",
        upstream_model: str | None = None,
        mode: str = "auto",
        timeout: float = 600.0,
        retries: int = 4,
        backoff: float = 0.5,
        backoff_cap: float = 8.0,
    ) -> RemoteEngine:
        """`name` supplies the tokenizer (and context length) that matches the served model."""
        from s1.core.models import load_tokenizer

        check_mode(mode)
        if not base_urls:
            raise UserError(
                f"The remote engine needs at least one server in {named('base_urls')} (an OpenAI-compatible server)."
            )
        tokenizer, context = load_tokenizer(name)
        engine = cls(None, tokenizer, fmt, context)
        engine.backend = RemoteBackend(
            base_urls,
            tokenizer,
            engine.format_tokens,
            upstream_model,
            mode,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            backoff_cap=backoff_cap,
        )
        if engine.backend.max_model_len:  # the server's own limit (vLLM --max-model-len) wins
            engine._context_length = min(context, engine.backend.max_model_len)
        return engine
