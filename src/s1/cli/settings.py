"""The commands' options for settings, derived from their one declaration (s1/core/settings.py).

A command names a group of settings as a parameter whose default is `Group(owner)`; `derive` puts one
option per declared field in its place (name, type, default, help and CLI spelling from the declaration)
and hands the command the values given, as a dict keyed by the settings' names. So `s1 serve
--min-thinking-tokens` exists because `BudgetForcing` declares `min_thinking_tokens`, not by hand.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from s1.core.errors import UserError
from s1.core.forcing import BudgetForcing
from s1.core.sampling import Sampling
from s1.core.settings import Declared, declared, element
from s1.evaluate.methods import SearchSpec
from s1.serve.limits import Limits

TAKES: dict[str, tuple[type, ...]] = {
    "generate": (BudgetForcing, Sampling),
    "eval": (BudgetForcing, Sampling, SearchSpec),
    "serve": (BudgetForcing, Sampling, Limits),  # forcing, sampling: the defaults of requests that set none; and
    # SearchSpec's reward model
    "train": (),  # its --seed is the training seed; its settings are TRL's (train/recipe.py)
    "report": (),
    "demo": (),
    "curate": (),  # roles' settings are keys of the curation config (curate/config.py)
    "models": (),
}
"""Which command takes which group of settings; tests/core/test_settings.py holds every command to it."""


@dataclass(frozen=True)
class Group:
    """A group of settings a command takes: `owner`'s declared fields (`only` these, if given).

    `sweep`: fields declared sweepable take comma-separated lists (s1 eval); `help` words each field's help
    for this command ("{help}" is the declared text); `own` overrides the help of single fields."""

    owner: type
    sweep: bool = False
    help: str = "{help}"
    only: tuple[str, ...] = ()
    own: tuple[tuple[str, str], ...] = ()
    defaults: tuple[tuple[str, Any], ...] = ()
    """This command's own defaults for single fields (s1 eval's answer budget: what the context leaves)."""

    def settings(self) -> list[Declared]:
        return [d for d in declared(self.owner) if not self.only or d.name in self.only]

    def parameter(self, d: Declared) -> inspect.Parameter:
        base, optional, many = element(d.type)
        text, default = d.help, dict(self.defaults).get(d.name, d.default)
        if self.sweep and d.sweep:
            kind = str
            default = "none" if default is None else str(default)
            text += " Comma-separated to sweep" + (" (none = no cap)." if optional else ".")
        elif many:
            kind, default = list[base], list(default)
            text += " Repeat to give several."
        else:
            kind = base | None if optional else base
        if d.escaped:
            text += " Escapes such as \\n are allowed."
            default = _escape(default)
        text = dict(self.own).get(d.name) or self.help.format(help=text)
        option = typer.Option(d.cli_flag, help=text)
        return inspect.Parameter(
            d.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
        )

    def values(self, given: dict) -> dict[str, Any]:
        """The command-line values, as the settings' own types: sweeps as lists, escapes resolved."""
        out = {}
        for d in self.settings():
            value = given.pop(d.name)
            if self.sweep and d.sweep:
                value = _sweep(value, d)
            elif d.escaped:
                value = _unescape(value)
            out[d.name] = value
        return out


def derive(command):
    """Replace each `Group` parameter of `command` by the options of its settings (see the module doc)."""
    signature = inspect.signature(command, eval_str=True)
    groups = {p.name: p.default for p in signature.parameters.values() if isinstance(p.default, Group)}
    parameters = []
    for p in signature.parameters.values():
        if p.name in groups:
            parameters += [groups[p.name].parameter(d) for d in groups[p.name].settings()]
        else:
            parameters.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def run(**given):
        for name, group in groups.items():
            given[name] = group.values(given)
        return command(**given)

    run.__signature__ = signature.replace(parameters=parameters)
    return run


def _sweep(text: str, d: Declared) -> list:
    """'512,1024' -> [512, 1024]; 'none' stands for no cap where the setting allows none."""
    base, optional, _ = element(d.type)
    values = []
    for part in text.split(","):
        part = part.strip()
        if optional and part.lower() in {"none", "off"}:
            values.append(None)
            continue
        try:
            values.append(base(part))
        except ValueError:
            raise UserError(
                f"{d.cli_flag} takes whole numbers separated by commas (e.g. 512,1024), got {text!r}."
            ) from None
    return values


def int_list(text: str, option: str) -> list[int]:
    """'16,32' -> [16, 32] for a comma-separated option that is not a declared setting (--steps, --width)."""
    try:
        return [int(part.strip()) for part in text.split(",")]
    except ValueError:
        raise UserError(f"{option} takes whole numbers separated by commas (e.g. 512,1024), got {text!r}.") from None


def _escape(text):
    return text.replace("\t", "\\t").replace("\n", "\\n") if isinstance(text, str) else text


def _unescape(text: str | None) -> str | None:
    """'\\n\\n' typed in a shell -> a blank line; other text as given."""
    if text is None:
        return None
    return text.replace("\\n", "\n").replace("\\t", "\t")
