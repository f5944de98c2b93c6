"""POST /v1/completions: plain continuations (what lm-eval and s1's remote engine need: echo,
logprobs, token ids) and, when asked for or when the prompt ends inside thinking, budget-forced ones,
whose choices also carry `reasoning` (and `reasoning_content`), `answer` and `s1`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi import Request as HTTPRequest
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from s1.engines.base import Completion
from s1.serve.bodies import documented, read_body
from s1.serve.protocol import CompletionBody
from s1.serve.responses import (
    CompletionChoice,
    CompletionChunk,
    CompletionChunkChoice,
    LegacyLogprobs,
    TextCompletion,
    Usage,
    legacy_logprobs,
)
from s1.serve.running import Reply, run
from s1.serve.schedulers import Delta, Done
from s1.serve.state import Served, served
from s1.serve.translate import Job, prompt_tokens

router = APIRouter()


@router.post("/v1/completions", openapi_extra=documented(CompletionBody))
async def completions(http: HTTPRequest, state: Annotated[Served, Depends(served)]) -> Response:
    body = await read_body(http, CompletionBody)
    jobs = await run_in_threadpool(state.translate.completion, body)  # tokenizing: off the event loop
    return await run(http, state, jobs, CompletionReply(body, jobs, state), body.stream)


class CompletionReply(Reply):
    """One completions request's answer: the whole `text_completion`, or its chunks."""

    kind, id_prefix, chunk = "completion", "cmpl", CompletionChunk
    body: CompletionBody

    def response(self, done: list[Done]) -> TextCompletion:
        completions = [d.completion for d in done]
        return TextCompletion(
            id=self.id,
            created=self.created,
            model=self.state.model_name,
            choices=[self._choice(job, d) for job, d in zip(self.jobs, done)],
            usage=Usage.of(completions, prompt_tokens(self.jobs)),
        )

    def _choice(self, job: Job, done: Done) -> CompletionChoice:
        body, r, c = self.body, job.request, done.completion
        fields = {}
        if not r.plain:
            reasoning = c.thinking if job.show_reasoning else None
            fields.update(reasoning=reasoning, reasoning_content=reasoning, answer=c.answer, s1=self.s1_fields(job, c))
        if body.return_token_ids:
            fields.update(prompt_token_ids=list(r.prompt_token_ids), token_ids=list(c.output_token_ids))
        return CompletionChoice(
            index=job.index,
            text=(r.prompt if body.echo else "") + done.raw_text,
            logprobs=self._logprobs(job, c) if body.logprobs is not None else None,
            finish_reason=c.finish_reason,
            stop_reason=c.stop_reason,
            **fields,
        )

    def _logprobs(self, job: Job, c: Completion) -> LegacyLogprobs:
        """The generated tokens' logprobs; with echo, the prompt's scored tokens first (lm-eval's loglikelihood)."""
        tokenizer, r = self.state.engine.tokenizer, job.request
        out = c.output_token_ids[: len(c.logprobs or [])]
        generated = legacy_logprobs(tokenizer, out, c.logprobs or [], len(r.prompt) if self.body.echo else 0)
        if not self.body.echo:
            return generated
        return legacy_logprobs(tokenizer, r.prompt_token_ids, c.prompt_logprobs or []) + generated

    def chunks(self, index: int, event: Delta | Done) -> list[CompletionChunk]:
        if isinstance(event, Delta):
            return [self.chunk_of([CompletionChunkChoice(index=index, text=event.raw)])] if event.raw else []
        c = event.completion
        last = CompletionChunkChoice(index=index, text="", finish_reason=c.finish_reason, stop_reason=c.stop_reason)
        return [self.chunk_of([last])]
