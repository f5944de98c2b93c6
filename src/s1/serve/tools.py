"""Tool calls, Hermes/Qwen style: a model whose chat template defines `tools` writes each call in its answer as
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`; the server hands them back as OpenAI's `tool_calls`
(vLLM's `hermes` parser), so budget forcing works inside agent loops. Thinking is never parsed: only the answer.
A block that is not a JSON call stays in `content`, as vLLM leaves text it cannot parse.
"""

from __future__ import annotations

import json
import re
import uuid

from s1.serve.responses import FunctionCall, ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*" + re.escape(CLOSE), re.DOTALL)


def template_defines_tools(tokenizer) -> bool:
    """Whether the model's chat template renders a `tools` list (Hermes, Qwen 2.5/3, SmolLM3, ...)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # several named templates
        template = " ".join(template.values())
    return "tools" in template


def calls_in(answer: str) -> tuple[str | None, list[ToolCall]]:
    """The answer's text outside its tool calls (None if nothing is left) and the calls, in order."""
    calls, kept, last = [], [], 0
    for m in _CALL.finditer(answer):
        try:
            data = json.loads(m[1])
            name = data["name"]
            arguments = data.get("arguments", data.get("parameters", {}))
        except (ValueError, KeyError, TypeError):
            continue
        if not isinstance(name, str):
            continue
        kept.append(answer[last : m.start()])
        last = m.end()
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        calls.append(ToolCall(id=f"chatcmpl-tool-{uuid.uuid4().hex}", function=FunctionCall(name=name, arguments=text)))
    if not calls:
        return answer, []
    kept.append(answer[last:])
    content = "".join(kept).strip()
    return content or None, calls


class ContentGate:
    """A streamed answer's content with tools on: text passes until a tool call may begin (a partial `<tool_call>`
    at the end is held back); from the first `<tool_call>` on, the rest is held and parsed when the answer ends."""

    def __init__(self):
        self.text = ""
        self.sent = 0
        self.holding = False

    def feed(self, piece: str) -> str:
        self.text += piece
        if self.holding:
            return ""
        at = self.text.find(OPEN, self.sent)
        if at >= 0:
            self.holding = True
            safe = at
        else:
            safe = len(self.text)
            for k in range(min(len(OPEN) - 1, len(self.text) - self.sent), 0, -1):
                if self.text.endswith(OPEN[:k]):
                    safe -= k
                    break
        out, self.sent = self.text[self.sent : safe], safe
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        """What is left to send as content, and the calls parsed from the held text."""
        content, calls = calls_in(self.text[self.sent :])
        self.sent = len(self.text)
        return content or "", calls


def template_message(message: dict, tool_calls: list, tool_call_id: str | None) -> dict:
    """A message's tool fields as chat templates read them: each call's arguments as a mapping (Qwen's and Hermes'
    templates render `arguments` with `tojson`), and the id a tool result answers."""
    if tool_calls:
        calls = []
        for call in tool_calls:
            call = dict(call) if isinstance(call, dict) else {}
            function = dict(call.get("function") or {})
            if isinstance(function.get("arguments"), str):
                try:
                    function["arguments"] = json.loads(function["arguments"])
                except ValueError:
                    pass
            calls.append({**call, "function": function})
        message["tool_calls"] = calls
    if tool_call_id is not None:
        message["tool_call_id"] = tool_call_id
    return message
