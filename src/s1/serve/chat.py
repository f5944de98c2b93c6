"""POST /v1/chat/completions: thinking comes back as `reasoning` (vLLM's name) and `reasoning_content` (its
earlier name, DeepSeek's and llama.cpp's), the answer as `content`; each choice carries s1's account of its
forcing in `s1`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi import Request as HTTPRequest
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from s1.engines.base import Completion
from s1.serve.bodies import read_body
from s1.serve.protocol import ChatBody
from s1.serve.responses import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatMessage,
    Usage,
    chat_logprobs,
)
from s1.serve.running import Reply, run
from s1.serve.schedulers import Delta, Done
from s1.serve.state import Served, served
from s1.serve.translate import Job, prompt_tokens

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat(http: HTTPRequest, state: Annotated[Served, Depends(served)]) -> Response:
    body = await read_body(http, ChatBody)
    jobs = await run_in_threadpool(state.translate.chat, body)  # templating and tokenizing: off the event loop
    return await run(http, state, jobs, ChatReply(body, jobs, state), body.stream)


class ChatReply(Reply):
    """One chat request's answer: the whole `chat.completion`, or its `chat.completion.chunk`s."""

    kind, id_prefix, chunk = "chat", "chatcmpl", ChatCompletionChunk
    body: ChatBody

    def response(self, done: list[Done]) -> ChatCompletion:
        completions = [d.completion for d in done]
        choices = [self._choice(job, c) for job, c in zip(self.jobs, completions)]
        return ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.state.model_name,
            choices=choices,
            usage=Usage.of(completions, prompt_tokens(self.jobs)),
            s1=self.s1_fields(self.jobs[0], completions[0]),
        )

    def _choice(self, job: Job, c: Completion) -> ChatChoice:
        engine = self.state.engine
        reasoning = c.thinking if job.show_reasoning else None
        logprobs = None
        if self.body.logprobs:
            logprobs = chat_logprobs(engine.tokenizer, engine.format_tokens.fmt, c, plain=job.request.plain)
        return ChatChoice(
            index=job.index,
            message=ChatMessage(content=c.answer, reasoning=reasoning, reasoning_content=reasoning),
            logprobs=logprobs,
            finish_reason=c.finish_reason,
            stop_reason=c.stop_reason,
            s1=self.s1_fields(job, c),
        )

    def opening(self) -> list[ChatCompletionChunk]:
        """Each choice's first chunk names the role, as OpenAI's do."""
        role = ChatDelta(role="assistant", content="")
        return [self.chunk_of([ChatChunkChoice(index=j.index, delta=role)]) for j in self.jobs]

    def chunks(self, index: int, event: Delta | Done) -> list[ChatCompletionChunk]:
        job = self.jobs[index]
        if isinstance(event, Delta):
            reasoning = event.reasoning if job.show_reasoning else ""
            delta = ChatDelta(
                **({"reasoning": reasoning, "reasoning_content": reasoning} if reasoning else {}),
                **({"content": event.content} if event.content else {}),
            )
            if not delta.model_fields_set:
                return []
            return [self.chunk_of([ChatChunkChoice(index=index, delta=delta)])]
        c = event.completion
        last = ChatChunkChoice(index=index, delta=ChatDelta(), finish_reason=c.finish_reason, stop_reason=c.stop_reason)
        return [self.chunk_of([last], s1=self.s1_fields(job, c))]
