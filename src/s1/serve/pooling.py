"""`POST /pooling` for a reward model, in the shape of vLLM's Pooling API, so `s1 serve --reward-model`
and vLLM serving a PRM answer the same client (`rewards.HTTPReward`) and a search's generator and reward
model can run on different machines.

A request names the solution either as chat `messages` (a user turn with the question, an assistant
turn with the steps joined by the step tag: what `HTTPReward` sends, and what vLLM's chat form of the
endpoint takes) or as `input` text (the question, the tag, then the steps each followed by the tag).
Each result's `data` is one [p_bad, p_good] vector per step, as vLLM's STEP pooling returns for a
two-way PRM head; an outcome model's is one vector for the whole solution.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from s1.evaluate.rewards import RewardModel
from s1.serve.bodies import documented, read_body
from s1.serve.protocol import BadRequest
from s1.serve.responses import Shape

MAX_INPUTS = 256
STEP_TAG = "\n\n"
"""What separates the question and the steps in a request (HTTPReward's default; --step-tag on both sides)."""
router = APIRouter()


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class PoolingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    input: str | list[str] | None = None
    messages: list[Message] | None = None
    encoding_format: Literal["float"] = "float"
    user: str | None = None
    task: Literal["token_classify", "classify", "reward"] | None = None


def parse(body: PoolingBody, tag: str) -> list[tuple[str, list[str]]]:
    """(question, steps) per input, or BadRequest with the one sentence the client gets."""
    if (body.input is None) == (body.messages is None):
        raise BadRequest(
            "Send either `input` (text) or `messages` (a user question and the assistant's steps), not both or neither."
        )
    if body.messages is not None:
        question = "\n".join(m.content for m in body.messages if m.role == "user")
        answer = "".join(m.content for m in body.messages if m.role == "assistant")
        if not question.strip() or not answer.strip():
            raise BadRequest("`messages` needs a user turn with the question and an assistant turn with the steps.")
        return [(question, _steps(answer, tag))]
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_INPUTS:
        raise BadRequest(f"`input` must hold 1 to {MAX_INPUTS} texts.")
    out = []
    for text in texts:
        question, found, rest = text.partition(tag)
        if not found or not question.strip() or not rest.strip():
            raise BadRequest(
                f"Each input is the question, {tag!r}, then the steps each followed by {tag!r}; one has no steps."
            )
        out.append((question, _steps(rest, tag)))
    return out


def _steps(text: str, tag: str) -> list[str]:
    return [s for s in text.split(tag) if s.strip()] or [text]


class PoolingData(Shape):
    index: int
    object: Literal["pooling"] = "pooling"
    data: list[list[float]]
    """One [p_bad, p_good] vector per scored step."""


class PoolingUsage(Shape):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0


class PoolingResponse(Shape):
    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[PoolingData]
    usage: PoolingUsage


@dataclass
class Pooling:
    """The served reward model, under the name clients use, and the tag between a request's steps."""

    reward: RewardModel
    model_name: str
    tag: str = STEP_TAG
    lock: threading.Lock = field(default_factory=threading.Lock)
    """One scoring at a time: the model is not shared across threads."""

    def score(self, items: list[tuple[str, list[str]]]):
        with self.lock:
            return self.reward.score(items)


def pooling_state(http: HTTPRequest) -> Pooling:
    return http.app.state.pooling


@router.post("/pooling", openapi_extra=documented(PoolingBody))
async def pooling(http: HTTPRequest, state: Annotated[Pooling, Depends(pooling_state)]) -> JSONResponse:
    body = await read_body(http, PoolingBody)  # parsed and checked off the event loop (bodies.py)
    scored = await asyncio.to_thread(state.score, parse(body, state.tag))
    data = []
    for i, s in enumerate(scored):
        values = [v for v in s.steps if not math.isnan(v)]  # an outcome model scores the last step alone
        if not values:
            raise BadRequest("The solution could not be scored (longer than the reward model's context?).")
        data.append(PoolingData(index=i, data=[[1.0 - v, v] for v in values]))
    tokens = sum(s.tokens for s in scored)
    return PoolingResponse(
        id=f"pool-{uuid.uuid4().hex[:24]}",
        created=int(time.time()),
        model=state.model_name,
        data=data,
        usage=PoolingUsage(prompt_tokens=tokens, total_tokens=tokens),
    ).response()


def add_pooling_route(app: FastAPI, reward: RewardModel, model_name: str, tag: str = STEP_TAG) -> None:
    """Serve `reward` at /pooling beside the generator."""
    app.state.pooling = Pooling(reward, model_name, tag)
    app.include_router(router)
