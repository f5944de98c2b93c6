"""POST /v1/responses: OpenAI's Responses API (what inspect-ai's `openai/` provider, `client.responses.create` and
`litellm.responses` call), text in and text out, with the thinking as a reasoning item and the answer as a message.

A streamed response sends the events the openai SDK and vLLM use, in their order: `response.created` and
`response.in_progress`; for the thinking, `output_item.added` (a reasoning item), `content_part.added`,
`reasoning_text.delta`s, `reasoning_text.done`, `content_part.done`, `output_item.done`; the same for the answer
(a message, `output_text.*`); then `response.completed`, or `response.incomplete` when max_output_tokens ended it
(an answer that s1's own `max_answer_tokens` ended is complete: its `s1` fields say so).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi import Request as HTTPRequest
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from s1.engines.base import Completion
from s1.serve.bodies import documented, read_body
from s1.serve.protocol import ResponsesBody
from s1.serve.responses import (
    IncompleteDetails,
    ItemEvent,
    MessageItem,
    OutputText,
    PartEvent,
    Piece,
    ReasoningItem,
    ReasoningSettings,
    ReasoningText,
    ResponseObject,
    ResponseStateEvent,
    ResponseUsage,
    TextDeltaEvent,
    TextDoneEvent,
    Usage,
    error_body,
)
from s1.serve.running import Reply, run
from s1.serve.schedulers import Delta, Done
from s1.serve.state import Served, served
from s1.serve.translate import prompt_tokens

router = APIRouter()


@router.post("/v1/responses", openapi_extra=documented(ResponsesBody))
async def responses(http: HTTPRequest, state: Annotated[Served, Depends(served)]) -> Response:
    body = await read_body(http, ResponsesBody)
    jobs = await run_in_threadpool(state.translate.responses, body)  # templating and tokenizing: off the event loop
    return await run(http, state, jobs, ResponsesReply(body, jobs, state), body.stream)


def _item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class ResponsesReply(Reply):
    """One Responses API request's answer: the `response` object, or its stream of events."""

    kind, id_prefix, chunk, named_events = "responses", "resp", ResponseStateEvent, True
    body: ResponsesBody

    def __init__(self, body, jobs, state):
        super().__init__(body, jobs, state)
        self.id = self.id.replace("resp-", "resp_")
        self.sequence = 0
        self.items: list[dict] = []
        """Output items opened so far in the stream: kind ("reasoning" / "message"), id, text, done."""

    # -- the whole response -----------------------------------------------------------------------------------
    def response(self, done: list[Done]) -> ResponseObject:
        c = done[0].completion
        output = []
        if self.jobs[0].show_reasoning:
            output.append(ReasoningItem(id=_item_id("rs"), content=[ReasoningText(text=c.thinking)]))
        output.append(MessageItem(id=_item_id("msg"), content=[OutputText(text=c.answer)]))
        return self._object(c, output)

    def _object(self, c: Completion | None, output: list) -> ResponseObject:
        """The response object; `c` None while it is still in progress."""
        body, request = self.body, self.jobs[0].request
        limit = request.forcing.max_tokens
        cut = c is not None and c.finish_reason == "length" and limit is not None and len(c.output_token_ids) >= limit
        status = "in_progress" if c is None else ("incomplete" if cut else "completed")
        return ResponseObject(
            id=self.id,
            created_at=self.created,
            model=self.state.model_name,
            status=status,
            incomplete_details=IncompleteDetails() if status == "incomplete" else None,
            instructions=body.instructions,
            max_output_tokens=request.forcing.max_tokens,
            metadata=body.metadata or {},
            output=output,
            reasoning=ReasoningSettings(effort=body.reasoning.effort if body.reasoning else body.reasoning_effort),
            temperature=request.sampling.temperature,
            top_p=request.sampling.top_p,
            usage=None if c is None else ResponseUsage.of(Usage.of([c], prompt_tokens(self.jobs))),
            user=body.user,
            **({} if c is None else {"s1": self.s1_fields(self.jobs[0], c)}),
        )

    # -- the stream of events ---------------------------------------------------------------------------------
    def _event(self, cls: type[Piece], type: str, **fields) -> Piece:
        event = cls(type=type, sequence_number=self.sequence, **fields)
        self.sequence += 1
        return event

    def opening(self) -> list[Piece]:
        response = self._object(None, [])
        return [
            self._event(ResponseStateEvent, "response.created", response=response),
            self._event(ResponseStateEvent, "response.in_progress", response=response),
        ]

    def chunks(self, index: int, event: Delta | Done) -> list[Piece]:
        if isinstance(event, Done):
            out = self._close_all()
            if not any(item["kind"] == "message" for item in self.items):
                out += self._open("message") + self._close_all()  # every response ends with its message
            c = event.completion
            final = self.response([event])
            final.output = [self._finished_item(item, c) for item in self.items]
            kind = "response.incomplete" if final.status == "incomplete" else "response.completed"
            return out + [self._event(ResponseStateEvent, kind, response=final)]
        out = []
        if event.reasoning and self.jobs[0].show_reasoning:
            out += self._text("reasoning", event.reasoning)
        if event.content:
            out += self._text("message", event.content)
        return out

    def failure(self, message: str) -> dict:
        return {**error_body(500, message, "server_error")["error"], "type": "error", "sequence_number": self.sequence}

    def _text(self, kind: str, delta: str) -> list[Piece]:
        """Events for new text of the reasoning item or the message, opening it (and closing the other) first."""
        out = []
        current = self.items[-1] if self.items else None
        if current is None or current["kind"] != kind:
            out += self._close_all() + self._open(kind)
            current = self.items[-1]
        current["text"] += delta
        name = "response.reasoning_text.delta" if kind == "reasoning" else "response.output_text.delta"
        extra = {} if kind == "reasoning" else {"logprobs": []}
        out.append(self._event(TextDeltaEvent, name, **self._where(current), delta=delta, **extra))
        return out

    def _where(self, item: dict) -> dict:
        return {"output_index": self.items.index(item), "item_id": item["id"]}

    def _open(self, kind: str) -> list[Piece]:
        item = {"kind": kind, "id": _item_id("rs" if kind == "reasoning" else "msg"), "text": "", "done": False}
        self.items.append(item)
        where = self._where(item)
        return [
            self._event(
                ItemEvent,
                "response.output_item.added",
                output_index=where["output_index"],
                item=self._item(item, "in_progress"),
            ),
            self._event(PartEvent, "response.content_part.added", **where, part=self._part(item)),
        ]

    def _close_all(self) -> list[Piece]:
        out = []
        for item in self.items:
            if item["done"]:
                continue
            item["done"] = True
            where = self._where(item)
            if item["kind"] == "reasoning":
                out.append(self._event(TextDoneEvent, "response.reasoning_text.done", **where, text=item["text"]))
            else:
                out.append(
                    self._event(TextDoneEvent, "response.output_text.done", **where, text=item["text"], logprobs=[])
                )
            out += [
                self._event(PartEvent, "response.content_part.done", **where, part=self._part(item)),
                self._event(
                    ItemEvent,
                    "response.output_item.done",
                    output_index=where["output_index"],
                    item=self._item(item, "completed"),
                ),
            ]
        return out

    @staticmethod
    def _part(item: dict) -> ReasoningText | OutputText:
        return ReasoningText(text=item["text"]) if item["kind"] == "reasoning" else OutputText(text=item["text"])

    def _item(self, item: dict, status: str) -> ReasoningItem | MessageItem:
        text = item["text"] if status == "completed" else ""
        if item["kind"] == "reasoning":
            return ReasoningItem(id=item["id"], content=[ReasoningText(text=text)] if text else [], status=status)
        content = [] if status == "in_progress" else [OutputText(text=text)]
        return MessageItem(id=item["id"], status=status, content=content)

    def _finished_item(self, item: dict, c: Completion) -> ReasoningItem | MessageItem:
        """An item of the final response object: the completion's own text (what the deltas added up to)."""
        text = c.thinking if item["kind"] == "reasoning" else c.answer
        return self._item({**item, "text": text}, "completed")
