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
from s1.serve.bodies import documented, read_body
from s1.serve.protocol import ChatBody
from s1.serve.responses import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatMessage,
    ToolCallDelta,
    Usage,
    chat_logprobs,
)
from s1.serve.running import Reply, run
from s1.serve.schedulers import Delta, Done
from s1.serve.state import Served, served
from s1.serve.tools import ContentGate, calls_in
from s1.serve.translate import Job, prompt_tokens

router = APIRouter()


@router.post("/v1/chat/completions", openapi_extra=documented(ChatBody))
async def chat(http: HTTPRequest, state: Annotated[Served, Depends(served)]) -> Response:
    body = await read_body(http, ChatBody)
    jobs = await run_in_threadpool(state.translate.chat, body)  # templating and tokenizing: off the event loop
    return await run(http, state, jobs, ChatReply(body, jobs, state), body.stream)


class ChatReply(Reply):
    """One chat request's answer: the whole `chat.completion`, or its `chat.completion.chunk`s."""

    kind, id_prefix, chunk = "chat", "chatcmpl", ChatCompletionChunk
    body: ChatBody

    def __init__(self, body: ChatBody, jobs: list[Job], state: Served):
        super().__init__(body, jobs, state)
        self.gates: dict[int, ContentGate] = {}
        """Per choice, the streamed content held back while a tool call may be under way."""

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
        content, calls = calls_in(c.answer) if self.tools else (c.answer, [])
        message = ChatMessage(content=content, reasoning=reasoning, reasoning_content=reasoning, tool_calls=calls)
        return ChatChoice(
            index=job.index,
            message=message,
            logprobs=logprobs,
            finish_reason="tool_calls" if calls else c.finish_reason,  # as vLLM: whatever ended the answer
            stop_reason=c.stop_reason,
            s1=self.s1_fields(job, c),
        )

    @property
    def tools(self) -> bool:
        """Whether the answers are parsed for tool calls: tools given, and tool_choice not `none`."""
        return bool(self.body.tools) and self.body.tool_choice != "none"

    def opening(self) -> list[ChatCompletionChunk]:
        """Each choice's first chunk names the role, as OpenAI's do."""
        role = ChatDelta(role="assistant", content="")
        return [self.chunk_of([ChatChunkChoice(index=j.index, delta=role)]) for j in self.jobs]

    def chunks(self, index: int, event: Delta | Done) -> list[ChatCompletionChunk]:
        job = self.jobs[index]
        gate = self.gates.setdefault(index, ContentGate()) if self.tools else None
        if isinstance(event, Delta):
            reasoning = event.reasoning if job.show_reasoning else ""
            content = gate.feed(event.content or "") if gate else event.content
            delta = ChatDelta(
                **({"reasoning": reasoning, "reasoning_content": reasoning} if reasoning else {}),
                **({"content": content} if content else {}),
            )
            if not delta.model_fields_set:
                return []
            return [self.chunk_of([ChatChunkChoice(index=index, delta=delta)])]
        c = event.completion
        out, finish = [], c.finish_reason
        if gate:
            rest, calls = gate.finish()
            if rest or calls:
                deltas = [ToolCallDelta(index=i, **call.model_dump()) for i, call in enumerate(calls)]
                delta = ChatDelta(**({"content": rest} if rest else {}), **({"tool_calls": deltas} if deltas else {}))
                out.append(self.chunk_of([ChatChunkChoice(index=index, delta=delta)]))
            if calls:
                finish = "tool_calls"
        last = ChatChunkChoice(index=index, delta=ChatDelta(), finish_reason=finish, stop_reason=c.stop_reason)
        return out + [self.chunk_of([last], s1=self.s1_fields(job, c))]
