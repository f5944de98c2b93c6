"""Settings declared once: a field of the dataclass that owns it, with its default, type, range and help.

`BudgetForcing`, `Sampling` and `SearchSpec` declare their fields with `setting(...)`, much as TRL's config
dataclasses carry `field(metadata={"help": ...})` for `HfArgumentParser`. Every front end is derived from
these declarations: the CLI's options (s1/cli/settings.py), the server's request fields and defaults
(serve/protocol.py), `s1 eval`'s config keys (evaluate/config.py) and curation's role keys
(curate/config.py). Adding a setting is one edit, and no front end can miss it (tests/core/test_settings.py).

The range here is what schemas show and check first (a 400 from the server, a config error naming its
key); the owner's `__post_init__` stays the one place that validates, with one sentence per bad value.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

_KEY = "s1"


@dataclass(frozen=True)
class Declared:
    """One setting as declared: help, range, public name and how the CLI spells it."""

    help: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    name: str = ""
    """The public name (config key, request field, --flag) where it differs from the field's own name:
    SearchSpec's `aggregate` is `reward_aggregate` to users (the field name is part of stored identities)."""
    flag: str = ""
    """The CLI's spelling where it is not --name-with-dashes (`--extension`, repeated, for `extensions`)."""
    sweep: bool = False
    """`s1 eval` sweeps it: a comma-separated list there, one setting of the sweep per value."""
    escaped: bool = False
    """Text the CLI takes with \\n and \\t escapes (a blank line is hard to type in a shell)."""
    field: str = ""
    """Filled in when read back by `declared`: the owner's attribute, its resolved type and default."""
    type: Any = None
    default: Any = None

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def bounds(self) -> dict:
        """The range as pydantic's Field keywords (ge, gt, le, lt)."""
        return {k: v for k in ("ge", "gt", "le", "lt") if (v := getattr(self, k)) is not None}


def setting(default: Any = dataclasses.MISSING, *, help: str, **about) -> Any:
    """A dataclass field declared as a user-facing setting (see `Declared` for the keywords)."""
    return dataclasses.field(default=default, metadata={_KEY: Declared(help, **about)})


def declared(owner: type) -> list[Declared]:
    """The settings `owner` declares, in field order, each completed with its field, type and default."""
    hints = typing.get_type_hints(owner)
    out = []
    for f in dataclasses.fields(owner):
        about = f.metadata.get(_KEY)
        if about is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(
            dataclasses.replace(about, field=f.name, name=about.name or f.name, type=hints[f.name], default=default)
        )
    return out


def by_name(owner: type) -> dict[str, Declared]:
    return {d.name: d for d in declared(owner)}


def element(tp: Any) -> tuple[Any, bool, bool]:
    """(the plain type, whether None is allowed, whether it is a list of them) of a declared type:
    int | None -> (int, True, False); tuple[str, ...] -> (str, False, True)."""
    args = typing.get_args(tp)
    optional = type(None) in args
    if optional:
        tp = next(a for a in args if a is not type(None))
    if typing.get_origin(tp) in (tuple, list):
        return typing.get_args(tp)[0], optional, True
    return tp, optional, False


def config_fields(*owners: type, skip: tuple[str, ...] = (), defaults: dict[str, Any] | None = None):
    """A class decorator (put it under @dataclass) that adds the owners' settings as fields of a config
    dataclass, under their public names and with their defaults: the config's keys are the settings'
    own. Swept settings become lists holding the default; tuples become lists (as YAML and JSON give)."""

    def add(cls):
        annotations = cls.__dict__.get("__annotations__", {})
        for owner in owners:
            for d in declared(owner):
                if d.name in skip or d.name in annotations:
                    continue
                if defaults and d.name in defaults:  # the config's own default (s1 eval's answer budget)
                    d = dataclasses.replace(d, default=defaults[d.name])
                _, _, many = element(d.type)
                if d.sweep:
                    annotations[d.name] = list[d.type]
                    value = dataclasses.field(default_factory=lambda v=d.default: [v], metadata={_KEY: d})
                elif many:
                    annotations[d.name] = list[element(d.type)[0]]
                    value = dataclasses.field(default_factory=lambda v=d.default: list(v), metadata={_KEY: d})
                else:
                    annotations[d.name] = d.type
                    value = dataclasses.field(default=d.default, metadata={_KEY: d})
                setattr(cls, d.name, value)
        cls.__annotations__ = annotations
        return cls

    return add
