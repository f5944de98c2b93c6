"""`--config FILE`: a command's own options as YAML keys, so a sweep (or one of the paper's recipes in
configs/paper/) is a file that runs as it is.

There is no second declaration of the keys: they are the command's parameter names (`max_thinking_tokens`,
`benchmark`, `method` ...), read off the click command itself, and the file's values become click's
`default_map`, so an option given on the command line overrides the file, and a value from the file is
converted and checked exactly like the same value typed as a flag. A list is the comma-separated form for
options that take one (`max_thinking_tokens: [512, 1024]`) and repeated flags for repeatable ones. The one
key that is not a flag is `paper:`, the numbers a recipe should reproduce; it is handed to the command
(`paper_numbers(ctx)`) for the run directory's paper.json, which `s1 report` prints beside the run's own.
"""

from pathlib import Path

import typer

from s1.core.errors import UserError

PAPER_KEY = "paper"


def load_config(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """The eager callback of --config: read FILE into the context's default_map before the other options are
    processed (click looks defaults up as each option is)."""
    if value is None:
        return None
    import yaml

    path = Path(value).expanduser()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UserError(
            f"Config {value} does not exist; pass a YAML file of options, such as configs/paper/*.yaml."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"Config {value} cannot be read ({exc.__class__.__name__}); pass a readable YAML file."
        ) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UserError(f"Config {value} is not valid YAML{at}; fix the file or pass the options as flags.") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"Config {value} must be a YAML mapping of option names to values, e.g. `limit: 5`.")
    params = {p.name: p for p in ctx.command.params if p.param_type_name == "option" and p.name != param.name}
    unknown = [str(k) for k in raw if k != PAPER_KEY and k not in params]
    if unknown:
        raise UserError(
            f"Config {value} has keys that are not options of s1 {ctx.info_name}: {', '.join(unknown)}; use the "
            f"options' names with underscores ({', '.join(sorted(params)[:6])} ...; see s1 {ctx.info_name} --help)."
        )
    ctx.meta[PAPER_KEY] = _paper(raw.get(PAPER_KEY), value)
    defaults = dict(ctx.default_map or {})
    for key, item in raw.items():
        if key != PAPER_KEY:
            defaults[key] = _as_option(params[key], key, item, value)
    ctx.default_map = defaults
    return value


def paper_numbers(ctx: typer.Context) -> dict | None:
    """The command's `paper:` block, when its --config had one."""
    return ctx.meta.get(PAPER_KEY)


def _as_option(param, key: str, item, source: str):
    """A YAML value as click would receive it from the command line."""
    if isinstance(item, dict):
        raise UserError(f"Config {source}: {key} takes a value or a list, not a mapping.")
    if param.multiple:
        items = item if isinstance(item, list) else [item]
        return [_text(key, v, source) for v in items]
    if isinstance(item, list):
        if param.is_flag:
            raise UserError(f"Config {source}: {key} is true or false, not a list.")
        return ",".join(_text(key, v, source) for v in item)
    return item if isinstance(item, bool) or item is None else _text(key, item, source)


def _text(key: str, item, source: str) -> str:
    if isinstance(item, (dict, list)):
        raise UserError(f"Config {source}: {key} takes plain values, not nested lists or mappings.")
    return "none" if item is None else str(item)


def _paper(block, source: str) -> dict | None:
    """The `paper:` block, checked for shape: `benchmarks: {name: {methods: {method: {control, scaling,
    performance}}, settings: {"method label": accuracy}}}`, plus free text (`source`, `note`)."""
    if block is None:
        return None
    if not isinstance(block, dict) or not isinstance(block.get("benchmarks", {}), dict):
        raise UserError(f"Config {source}: paper must be a mapping with benchmarks: {{name: {{methods, settings}}}}.")
    for name, bench in block.get("benchmarks", {}).items():
        if not isinstance(bench, dict) or set(bench) - {"methods", "settings"}:
            raise UserError(f"Config {source}: paper.benchmarks.{name} takes methods and settings only.")
        for method, metrics in (bench.get("methods") or {}).items():
            if not isinstance(metrics, dict) or set(metrics) - {"control", "scaling", "performance"}:
                raise UserError(
                    f"Config {source}: paper.benchmarks.{name}.methods.{method} takes control, scaling, performance."
                )
            if not all(isinstance(v, (int, float)) for v in metrics.values()):
                raise UserError(f"Config {source}: paper.benchmarks.{name}.methods.{method} takes numbers only.")
        for label, accuracy in (bench.get("settings") or {}).items():
            if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool):
                raise UserError(f"Config {source}: paper.benchmarks.{name}.settings[{label!r}] must be an accuracy.")
    return block
