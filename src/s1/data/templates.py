"""The Jinja sandbox task files' templates run in, bounded in time, size and arithmetic.

Jinja's sandbox stops a template from reaching Python's internals, but not from asking for a lot:
`{{ 'a' * 10**13 }}`, `{{ 10**10**9 }}`, `{{ 'x' | center(10**10) }}` or two nested loops over
`range(100000)` would take the machine's memory or hours. A task file is data a user may have been
sent, so every operation that can grow a value is checked before it runs (repetition, powers,
concatenation, padding widths, `replace`, `indent`, `join`, printf and `str.format` widths), every
value a call or filter returns is bounded, the output is counted as it is produced, and rendering
stops after a deadline (a trace on the template's code and the Python it calls, so loops cannot run on). Exceeding any
bound raises `TemplateLimit`, which `benchmarks.py` turns into one sentence naming the file and field.
"""

from __future__ import annotations

import math
import re
import string
import sys
import time
from functools import wraps

from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_CHARS = 1_000_000
"""The largest string (or sequence, counted in characters and items) a template may build or print."""
MAX_BITS = 4096
"""The largest integer a power may produce, in bits."""
SECONDS = 2.0
"""Rendering one field of one record may take this long; real templates take microseconds."""

_NESTED_FIELD = re.compile(r"\{[^{}]*:[^{}]*\{")
"""A str.format field whose spec holds another field (`{:{w}}`): a width taken from the values."""
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


class TemplateLimit(SecurityError):
    """A template asked for more than the sandbox allows."""


def weight(value, budget: int = MAX_CHARS + 1) -> int:
    """Characters and items a value holds (a string its length, a container its items and theirs), counted
    up to `budget`: what printing or joining it would cost."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        total = len(value)
        for item in value:
            if total > budget:
                break
            total += weight(item, budget - total)
        return total
    return 1


def _check_size(value, what: str):
    if weight(value) > MAX_CHARS:
        raise TemplateLimit(f"{what} would be over {MAX_CHARS:,} characters")
    return value


def _check_number(value) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CHARS:
        raise TemplateLimit(f"the number {_short(value)} is above the sandbox's limit of {MAX_CHARS:,}")


def _short(value: int) -> str:
    return str(value) if value.bit_length() < 64 else f"of {value.bit_length()} bits"


def _check_widths(fmt: str) -> None:
    """Widths and precisions in a printf or str.format string, which would pad a value that far."""
    numbers = [n for m in _PRINTF.finditer(fmt) for n in m.groups() if n and n != "*"]
    try:
        for _, _, spec, _ in string.Formatter().parse(fmt):
            numbers += re.findall(r"\d+", spec or "")
    except ValueError:
        pass  # not a str.format string; formatting it will say so
    for number in numbers:
        if len(number) > 7 or int(number) > MAX_CHARS:
            raise TemplateLimit(f"a format width of {number[:20]} is above the sandbox's limit of {MAX_CHARS:,}")


def _check_binop(operator: str, left, right) -> None:
    if operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if right * math.log2(abs(left)) > MAX_BITS:
                raise TemplateLimit(f"a power would be over {MAX_BITS} bits")
        return
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(times, int) and isinstance(seq, (str, bytes, list, tuple)):
                if times > 0 and weight(seq) * times > MAX_CHARS:
                    raise TemplateLimit(f"a repetition would be over {MAX_CHARS:,} characters")
        return
    if operator == "+":
        if isinstance(left, (str, bytes, list, tuple)) and weight(left) + weight(right) > MAX_CHARS:
            raise TemplateLimit(f"a concatenation would be over {MAX_CHARS:,} characters")
        return
    if operator == "%" and isinstance(left, str):
        _check_widths(left)
        if "*" in left:  # '%*d' % (width, value): the width comes from the values
            for value in right.values() if isinstance(right, dict) else right if isinstance(right, tuple) else (right,):
                _check_number(value)


def _checked_filter(name: str, function, missing):
    """A filter that refuses numbers above the bounds, checks the filters that multiply their input, bounds
    what it returns, and passes a missing value on as missing (`missing` tells one; `default` alone, whose
    job is to replace it, sees it)."""
    from jinja2.utils import _PassArg

    skip = 1 if _PassArg.from_obj(function) is not None else 0

    @wraps(function)
    def checked(*args, **kwargs):
        values = list(args[skip:])
        data = name == "format" and isinstance(values[0] if values else None, str) and "*" not in values[0]
        for value in () if data else (*values[1:], *kwargs.values()):  # sizes are parameters; data (a gold
            _check_number(value)  # answer of 2500000, what format fills in without a '*' width) is not a size
        if name == "join" and values and not isinstance(values[0], str):
            values[0] = list(values[0])  # a generator (map) is read once, here
            args = (*args[:skip], *values)
        first = values[0] if values else None
        if missing is not None and name not in ("default", "d"):
            if missing(first) or (name == "join" and isinstance(first, list) and any(map(missing, first))):
                return None
        if name == "replace" and len(values) >= 3:
            text, old, new = (str(v) for v in values[:3])
            grows = (len(text) + 1) * len(new) if not old else text.count(old) * max(0, len(new) - len(old))
            if len(text) + grows > MAX_CHARS:
                raise TemplateLimit(f"replace would make over {MAX_CHARS:,} characters")
        if name == "indent" and values:
            width = values[1] if len(values) > 1 else kwargs.get("width", 4)
            width = len(width) if isinstance(width, str) else width
            text = str(first)
            if isinstance(width, int) and len(text) + (text.count("\n") + 1) * width > MAX_CHARS:
                raise TemplateLimit(f"indent would make over {MAX_CHARS:,} characters")
        if name in ("join", "sum", "string", "pprint", "tojson", "list") and values:
            _check_size(first, f"the value given to {name}")
        if name == "format" and isinstance(first, str):
            _check_widths(first)
        return _check_size(function(*args, **kwargs), f"what {name} returns")

    checked._bounded = True
    return checked


def _checked_join(join):
    """Jinja's `~`: refused before it builds a string over the bound."""

    @wraps(join)
    def checked(seq):
        parts = list(seq)
        if sum(len(str(p)) if isinstance(p, str) else weight(p) for p in parts) > MAX_CHARS:
            raise TemplateLimit(f"a concatenation would be over {MAX_CHARS:,} characters")
        return join(parts)

    checked._bounded = True
    return checked


def _check_growing_method(text: str, name: str, args: tuple, kwargs: dict) -> tuple:
    """str methods whose result can be far larger than their inputs, measured before they run (the result is
    bounded after too, but only once built: `.replace('a', 'b' * 999999)` on 1000 characters is a gigabyte).
    Returns the arguments, a generator given to `join` read once into a list."""
    if name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int) and text.count("\t") * size > MAX_CHARS:
            raise TemplateLimit(f"expandtabs would make over {MAX_CHARS:,} characters")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        count = args[2] if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0 else None
        places = len(text) + 1 if not old else text.count(old)
        places = places if count is None else min(places, count)
        if len(text) + places * max(0, len(new) - len(old)) > MAX_CHARS:
            raise TemplateLimit(f"replace would make over {MAX_CHARS:,} characters")
    elif name == "join" and args:
        parts = args[0] if isinstance(args[0], (list, tuple, str)) else list(args[0])
        separators = len(text) * max(0, len(parts) - 1)  # the cheap part first: weight() walks every item
        if separators > MAX_CHARS or weight(parts, MAX_CHARS + 1 - separators) + separators > MAX_CHARS:
            raise TemplateLimit(f"join would make over {MAX_CHARS:,} characters")
        args = (parts, *args[1:])
    return args


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with the bounds above; render with `render`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options):
        super().__init__(**options)
        self.globals.pop("lipsum", None)  # text by the kilobyte on request; no task needs it

    def wrap_filters(self, missing=None) -> None:
        """Bound every filter registered so far (call after adding your own); with `missing` (a test for a
        missing value), filters hand a missing value on instead of writing it out as text ("None")."""
        self.filters = {
            name: f if getattr(f, "_bounded", False) else _checked_filter(name, f, missing)
            for name, f in self.filters.items()
        }

    def from_string(self, source, globals=None, template_class=None):
        """Compile, with the `~` operator (which Jinja joins with a helper in the template's namespace, not an
        operator it lets a sandbox intercept) bounded too."""
        template = super().from_string(source, globals, template_class)
        namespace = template.root_render_func.__globals__
        for name in ("str_join", "markup_join"):
            if name in namespace and not getattr(namespace[name], "_bounded", False):
                namespace[name] = _checked_join(namespace[name])
        return template

    def call_binop(self, context, operator, left, right):
        _check_binop(operator, left, right)
        return _check_size(super().call_binop(context, operator, left, right), "a value")

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's own signature
        method = getattr(__obj, "__wrapped__", __obj)
        name, owner = getattr(method, "__name__", ""), getattr(method, "__self__", None)
        formatting = name in ("format", "format_map") and isinstance(owner, str)
        if not formatting or _NESTED_FIELD.search(owner):  # what format fills in is data, unless it is a width
            for value in (*args, *kwargs.values()):
                _check_number(value)
        if isinstance(owner, str):
            args = _check_growing_method(owner, name, args, kwargs)
        if formatting:
            _check_widths(method.__self__)
            for value in (*args, *kwargs.values(), *(args[0].values() if args and isinstance(args[0], dict) else ())):
                if isinstance(value, str) and value.strip().isdigit():  # a width given as text: `{:{w}}`
                    _check_widths("{:" + value.strip() + "}")
        return _check_size(super().call(__context, __obj, *args, **kwargs), "what a call returns")

    def render(self, template, variables: dict) -> str:
        """Render a compiled template within the deadline and the output bound."""
        deadline = _Deadline(SECONDS)
        previous = sys.gettrace()
        sys.settrace(deadline)
        try:
            parts, size = [], 0
            for part in template.generate(**variables):
                size += len(part)
                if size > MAX_CHARS:
                    raise TemplateLimit(f"the output would be over {MAX_CHARS:,} characters")
                parts.append(part)
            return "".join(parts)
        finally:
            sys.settrace(previous)


class _Deadline:
    """A trace function that stops rendering at the deadline: it follows the template's own code (loops included)
    and every Python function the template calls (a filter such as `wordwrap` runs in Python for as long as its
    input lets it, 75 s for a million characters), so neither runs on past it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.events = 0

    def __call__(self, frame, event, arg):
        return self.line

    def line(self, frame, event, arg):
        self.events += 1
        if not self.events % 256 and time.monotonic() > self.end:
            raise TemplateLimit(f"rendering took over {self.seconds:g} seconds")
        return self.line
