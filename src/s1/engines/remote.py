"""Remote engine: budget forcing against any OpenAI-compatible server through the re-prefill loop.

Each round is one `/v1/completions` call. Token mode sends the prompt as token ids and reads the
generated ids back (vLLM: `return_token_ids`, `stop_token_ids`), so nothing is re-tokenized; servers
that take only text (llama.cpp's, many others) get text with the stop tokens as stop strings, and the
reply is encoded with the model's tokenizer. Several servers are used data-parallel: calls are spread
round-robin, and a call that fails on one server is retried on the next.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from ..errors import UserError
from ..formats import FormatTokens, ThinkingFormat, encode
from .reprefill import Call, ReprefillEngine


class RemoteBackend:
    def __init__(self, base_urls: list[str], tokenizer, format_tokens: FormatTokens, model: str | None = None,
                 mode: str = "auto", timeout: float = 600.0, retries: int = 3):
        if not base_urls:
            raise UserError("The remote engine needs at least one --base-url (an OpenAI-compatible server).")
        self.urls = [u.rstrip("/").removesuffix("/v1") for u in base_urls]
        self.client = httpx.Client(timeout=timeout)
        self.tokenizer = tokenizer
        self.tokens = format_tokens
        self.retries = retries
        self.turn = itertools.count()
        self.text_mode = {u: mode == "text" if mode != "auto" else None for u in self.urls}
        self.model = model or self._first_model()

    def _first_model(self) -> str:
        for url in self.urls:
            try:
                return self.client.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
            except (httpx.HTTPError, KeyError, IndexError, ValueError):
                continue
        raise UserError(f"No server at {', '.join(self.urls)} answered /v1/models; check --base-url and that the servers run.")

    def complete(self, calls: list[Call]) -> list[list[int]]:
        if len(calls) == 1:
            return [self._with_retries(calls[0])]
        with ThreadPoolExecutor(max_workers=min(len(calls), 64)) as pool:
            return list(pool.map(self._with_retries, calls))

    def _with_retries(self, call: Call) -> list[int]:
        last: Exception | None = None
        for attempt in range(self.retries * len(self.urls)):
            url = self.urls[next(self.turn) % len(self.urls)]
            try:
                return self._complete(url, call)
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code < 500:
                    raise RuntimeError(f"{url} refused the request: {exc.response.text[:300]}") from None
                last = exc
                time.sleep(min(2.0, 0.2 * (attempt + 1)))
        raise RuntimeError(f"every server failed ({last!r})")

    def _body(self, call: Call) -> dict:
        s = call.sampling
        body = {"model": self.model, "max_tokens": call.max_tokens, "temperature": s.temperature, "top_p": s.top_p,
                "repeat_penalty": 1.0, "repetition_penalty": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0}
        if s.seed is not None:
            body["seed"] = s.seed
        return body

    def _complete(self, url: str, call: Call) -> list[int]:
        if not self.text_mode[url]:
            body = {**self._body(call), "prompt": call.token_ids, "return_token_ids": True,
                    "stop_token_ids": sorted(call.stop_ids), "skip_special_tokens": False}
            r = self.client.post(f"{url}/v1/completions", json=body)
            if r.status_code != 200 and self.text_mode[url] is None:
                self.text_mode[url] = True  # the first call decides: this server takes no token ids
            else:
                r.raise_for_status()
                choice = r.json()["choices"][0]
                if "token_ids" in choice and choice["token_ids"] is not None:
                    self.text_mode[url] = False
                    return self._ending(list(choice["token_ids"]), call, choice.get("finish_reason"))
                self.text_mode[url] = True
        stops = [self.tokenizer.decode([t], skip_special_tokens=False) for t in sorted(call.stop_ids)]
        body = {**self._body(call), "prompt": self.tokenizer.decode(call.token_ids, skip_special_tokens=False), "stop": stops}
        r = self.client.post(f"{url}/v1/completions", json=body)
        r.raise_for_status()
        choice = r.json()["choices"][0]
        ids = encode(self.tokenizer, choice.get("text") or "")
        return self._ending(ids, call, choice.get("finish_reason"))

    def _ending(self, ids: list[int], call: Call, finish_reason: str | None) -> list[int]:
        """Normalize a reply to "tokens, then the stop token if one ended it", as the loop expects."""
        ids = ids[: call.max_tokens]
        for j, t in enumerate(ids):
            if t in call.stop_ids:
                return ids[: j + 1]
        if finish_reason == "stop" and len(ids) < call.max_tokens:
            # Text replies do not say which stop string matched; for the formats here every trigger
            # leads to the same delimiter, so the delimiter's own first token stands for all of them.
            preferred = [t for t in self.tokens.think_end_ids[:1] if t in call.stop_ids] or sorted(call.stop_ids)
            ids.append(preferred[0])
        return ids


class RemoteEngine(ReprefillEngine):
    @classmethod
    def load(cls, name: str, base_urls: list[str], fmt: str | ThinkingFormat = "s1", upstream_model: str | None = None,
             mode: str = "auto") -> "RemoteEngine":
        """`name` supplies the tokenizer (and context length) that matches the served model."""
        from ..models import load_tokenizer

        tokenizer, context = load_tokenizer(name)
        engine = cls(None, tokenizer, fmt, context)
        engine.backend = RemoteBackend(base_urls, tokenizer, engine.format_tokens, upstream_model, mode)
        return engine
