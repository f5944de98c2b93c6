"""A training recipe: s1's own keys plus any field of TRL's `SFTConfig`, declared once and checked before training.

The paper's recipe (s1 §D) is `PAPER`, written in `SFTConfig`'s own field names, so every other field
of `SFTConfig` / `TrainingArguments` is reachable the same way without s1 re-declaring it. Values come,
later winning, from `PAPER`, a YAML recipe file (`s1 train --config recipe.yaml`, keys as in TRL's own
recipe files), the CLI's short flags (`--lr` is `learning_rate`, see `SHORT_FLAGS`) and `--set key=value`.
Strings are converted by the field's declared type, so `--set learning_rate=2e-5` and a YAML `2e-5`
(which YAML reads as text) both become floats; every wrong key or value is one sentence.

One concern, so one module past 400 lines: what a training run is asked to do (keys, defaults, validation).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from s1.core.errors import UserError, first_line
from s1.core.unicode import refuse_lone_surrogates

PAPER: dict = {
    "num_train_epochs": 5.0,
    "learning_rate": 1e-5,
    "per_device_train_batch_size": 1,
    "warmup_steps": 0.05,  # below 1: a share of all steps (transformers 5 merged warmup_ratio into it)
    "lr_scheduler_type": "cosine",
    "weight_decay": 1e-4,
    "adam_beta1": 0.9,
    "adam_beta2": 0.95,
    "max_length": 32768,
    "packing": False,
    "completion_only_loss": True,
    "activation_checkpointing": False,
    "max_steps": -1,
    "logging_steps": 1,
    "save_total_limit": 2,
    "report_to": "none",
    "seed": 42,
}
"""The paper's recipe in SFTConfig's names: 5 epochs, lr 1e-5, 5% warm-up then cosine, AdamW (0.9, 0.95), wd 1e-4,
block 32,768, no packing, loss on the assistant part only; global batch 16 is `TrainConfig.batch_size`."""

SHORT_FLAGS: dict[str, str] = {
    "epochs": "num_train_epochs",
    "lr": "learning_rate",
    "micro_batch_size": "per_device_train_batch_size",
    "block_size": "max_length",
    "max_steps": "max_steps",
    "warmup_ratio": "warmup_ratio",  # an alias of warmup_steps, checked to be a share below 1
    "weight_decay": "weight_decay",
    "adam_beta1": "adam_beta1",
    "adam_beta2": "adam_beta2",
    "gradient_checkpointing": "activation_checkpointing",
    "bf16": "bf16",
    "save_steps": "save_steps",
    "save_total_limit": "save_total_limit",
    "logging_steps": "logging_steps",
    "report_to": "report_to",
    "seed": "seed",
}
"""CLI flag (without dashes, underscores for hyphens) -> the SFTConfig field it sets."""

ALIASES: dict[str, str] = {
    "model_name_or_path": "model",
    "dataset_name": "data",
    "output_dir": "output",
    "torch_dtype": "dtype",
    "warmup_ratio": "warmup_steps",
    "gradient_checkpointing": "activation_checkpointing",
}
"""Keys of TRL / open-r1 recipe files that mean one of ours, so those files work as they are."""

MANAGED: dict[str, str] = {
    "gradient_accumulation_steps": "s1 derives it from batch_size (the global batch); set batch_size instead",
    "use_cpu": "s1 uses the CPU exactly when no GPU is present",
    "eos_token": "s1 ends every turn with the model's own end-of-sequence token",
    "dataset_text_field": "s1 renders each record as prompt and completion itself",
    "resume_from_checkpoint": "pass --resume (resume: true) and s1 continues from the newest complete checkpoint",
}
"""SFTConfig fields s1 sets itself, with why; a recipe naming one is refused rather than silently overridden."""

TRACE_SOURCES = ("deepseek", "gemini")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "half": "float16", "float": "float32"}
REPORT_TO = ("none", "wandb", "tensorboard")


@dataclass
class TrainConfig:
    """What s1 itself decides; every other training value is an SFTConfig field in `sft` (over `PAPER`)."""

    model: str = "smollm2"
    data: str = ""
    output: str = "runs/train"
    format: str = "s1"
    trace_source: str = "deepseek"
    long_sequences: str = "truncate"
    """truncate (counted and warned about) or drop."""
    batch_size: int = 16
    """Global batch: micro batch x gradient accumulation x processes (paper: 16)."""
    dtype: str = "auto"
    """Weights as loaded, trained (outside FSDP's fp32 master copy) and saved: auto is bf16 on GPUs that have it."""
    resume: bool = False
    system: str | None = None
    use_peft: bool = False
    """Train a LoRA adapter through PEFT instead of every weight (TRL's ModelConfig names, as its scripts take them);
    the run saves OUTPUT/adapter and the merged model in OUTPUT/final."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None
    """Module names the adapter wraps; none: every linear layer but the output head (PEFT's "all-linear")."""
    sft: dict = field(default_factory=dict)
    """SFTConfig fields over `PAPER`."""

    def value(self, name: str):
        """An SFTConfig field as this run will use it."""
        return self.sft.get(name, PAPER.get(name))


OWN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "sft")


def sft_fields() -> dict[str, object]:
    """SFTConfig's fields and their resolved types (imports TRL, about a second)."""
    from trl import SFTConfig

    hints = typing.get_type_hints(SFTConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(SFTConfig) if f.init}


def build(file: str | None = None, flags: dict | None = None, sets: list[str] | None = None) -> TrainConfig:
    """The run's config from a recipe file, the CLI's given short flags and --set pairs, in that order."""
    values: dict = {}
    if file:
        values.update(read_recipe(file))
    for flag, value in (flags or {}).items():
        if value is not None:
            values[SHORT_FLAGS.get(flag, flag)] = value
    for pair in sets or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r} is not KEY=VALUE; write it like --set learning_rate=2e-5.")
        values[key.strip()] = value
    return resolve(values)


def read_recipe(file: str) -> dict:
    import yaml

    path = Path(file)
    if not path.is_file():
        raise UserError(f"Recipe file {file} does not exist; pass a YAML file such as configs/recipes/s1-32b.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"Recipe file {file} is not valid YAML ({first_line(exc, 160)}); fix the file.") from None
    data = refuse_lone_surrogates(data, f"Recipe file {file}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"Recipe file {file} must be a mapping of keys to values, not a {type(data).__name__}.")
    return {str(k): v for k, v in data.items()}


def resolve(values: dict) -> TrainConfig:
    """Sort keys into s1's own and SFTConfig's, converting each value to its field's type."""
    fields = sft_fields()
    unknown = [key for key in values if ALIASES.get(key, key) not in (*OWN_KEYS, *fields)]
    if unknown:
        described = ", ".join(
            repr(k)
            + (
                " (a key of TRL's script configs that s1 does not take)"
                if k in MODEL_CONFIG_KEYS
                else _suggest(k, [*OWN_KEYS, *fields])
            )
            for k in unknown
        )
        raise UserError(
            f"Unknown training key{'s' if len(unknown) > 1 else ''} {described}; use s1's keys "
            f"({', '.join(OWN_KEYS)}) or fields of TRL's SFTConfig."
        )
    own_types = typing.get_type_hints(TrainConfig)
    own, sft = {}, {}
    for key, value in values.items():
        name = ALIASES.get(key, key)
        if name in MANAGED:
            raise UserError(f"{name} cannot be set: {MANAGED[name]}.")
        if name == "warmup_steps" and key == "warmup_ratio":
            value = _convert(key, value, float)
            if not 0 <= value < 1:
                raise UserError(
                    "warmup_ratio (--warmup-ratio) is a share of all steps, from 0 up to (not including) 1; "
                    f"got {value}."
                )
        if name in OWN_KEYS:
            own[name] = _convert(key, value, own_types[name])
        else:
            sft[name] = _convert(key, value, fields[name])
    if isinstance(own.get("dtype"), str):
        own["dtype"] = DTYPE_NAMES.get(own["dtype"].lower(), own["dtype"].lower())
    config = TrainConfig(**own, sft=sft)
    check(config)
    return config


def _suggest(key: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


MODEL_CONFIG_KEYS = (
    "model_revision",
    "attn_implementation",
    "trust_remote_code",
    "load_in_4bit",
    "load_in_8bit",
    "overwrite_output_dir",
)
"""Keys of TRL's script configs (ModelConfig, old TrainingArguments) that recipe files carry and s1 does not take."""


def _convert(key: str, value, hint):
    """`value` (YAML-typed or a --set string) as the declared type, or one sentence naming key and type."""
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~")):
        if type(None) in members:
            return None
        raise UserError(f"{key} cannot be empty; give it a {_describe(members)}.")
    order = sorted(members, key=_order)
    if (
        isinstance(value, str)
        and str in members
        and not value.lstrip().startswith(("[", "{"))
        and "," not in value
        and ": " not in value
    ):
        order.remove(str)  # a plain word stays text where a field also takes a list or mapping ("all-linear")
        order.insert(next((i for i, m in enumerate(order) if _order(m) >= 3), len(order)), str)
    for member in order:
        try:
            return _as(value, member)
        except (TypeError, ValueError):
            continue
    raise UserError(f"{key} must be a {_describe(members)}, got {value!r}.")


def _order(member) -> int:
    """Try the strictest types first, so '3' is an int where a field takes int or str."""
    for rank, kind in enumerate((bool, int, float, dict, list)):
        if member is kind or typing.get_origin(member) is kind:
            return rank
    return 9


def _as(value, member):
    origin = typing.get_origin(member) or member
    if member is type(None):
        raise TypeError
    if origin is typing.Literal:
        if value in typing.get_args(member):
            return value
        raise ValueError
    if origin is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise ValueError
    if origin is int:
        if isinstance(value, bool):
            raise TypeError
        number = float(value) if isinstance(value, str) else value
        if not isinstance(number, (int, float)) or not math.isfinite(number) or number != int(number):
            raise ValueError
        return int(number)
    if origin is float:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    if origin in (dict, list):
        if isinstance(value, str):
            value = _parse_structured(value, origin)
        if not isinstance(value, origin):
            raise TypeError
        return value
    if isinstance(origin, type) and issubclass(origin, enum.Enum):
        return origin(value).value
    if origin is str:
        if isinstance(value, (dict, list)):
            raise TypeError
        return str(value)
    if isinstance(value, origin):
        return value
    raise TypeError


def _parse_structured(text: str, kind: type):
    """--set values for dict / list fields: JSON or YAML, or a comma-separated list."""
    import yaml

    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError from None
    if kind is list and not isinstance(parsed, list):
        return [part.strip() for part in text.split(",") if part.strip()]
    return parsed


def _describe(members) -> str:
    names = []
    for member in members:
        if member is type(None):
            continue
        origin = typing.get_origin(member) or member
        if origin is typing.Literal:
            names.append("one of " + ", ".join(map(json.dumps, typing.get_args(member))))
        else:
            name = getattr(origin, "__name__", str(origin))
            names.append(
                {
                    "int": "whole number",
                    "float": "number",
                    "str": "text",
                    "bool": "true or false",
                    "dict": "mapping",
                    "list": "list",
                }.get(name, name)
            )
    return " or ".join(dict.fromkeys(names)) or "value"


def check(config: TrainConfig) -> None:
    """The rules no type says: ranges, choices, and what s1 needs of a recipe (each one sentence)."""
    from s1.core.formats import FORMATS

    value = config.value
    if config.format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {config.format!r}.")
    if config.trace_source not in TRACE_SOURCES:
        raise UserError(f"--trace-source must be one of {', '.join(TRACE_SOURCES)}.")
    if config.long_sequences not in ("truncate", "drop"):
        raise UserError(f"--long-sequences must be truncate or drop, got {config.long_sequences!r}.")
    if config.dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)} (or bf16, fp16, fp32), got {config.dtype!r}.")
    if config.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {config.batch_size}.")
    if value("num_train_epochs") <= 0 or value("learning_rate") <= 0:
        raise UserError("num_train_epochs (--epochs) and learning_rate (--lr) must be positive.")
    if value("per_device_train_batch_size") < 1:
        raise UserError("per_device_train_batch_size (--micro-batch-size) must be at least 1.")
    if value("max_length") is None or value("max_length") < 16:
        raise UserError("max_length (--block-size) must be at least 16 tokens.")
    warmup = value("warmup_steps")
    if warmup < 0 or (warmup >= 1 and warmup != int(warmup)):
        raise UserError(f"warmup_steps must be a share of all steps below 1 or a whole number of steps, got {warmup}.")
    if value("weight_decay") < 0 or not (0 <= value("adam_beta1") < 1 and 0 <= value("adam_beta2") < 1):
        raise UserError("weight_decay (--weight-decay) must be at least 0 and adam_beta1/adam_beta2 from 0 up to 1.")
    if value("logging_steps") <= 0 or (value("save_steps") is not None and value("save_steps") <= 0):
        raise UserError(
            f"logging_steps (--logging-steps) and save_steps (--save-steps) must be at least 1, "
            f"got {value('logging_steps')} and {value('save_steps')}."
        )
    if value("save_total_limit") is not None and value("save_total_limit") < 1:
        raise UserError("save_total_limit (--save-total-limit) must be at least 1 (or null to keep every checkpoint).")
    if value("max_steps") == 0 or value("max_steps") < -1:
        raise UserError(f"max_steps (--max-steps) must be -1 (all epochs) or at least 1, got {value('max_steps')}.")
    if not 0 <= value("seed") < 2**32:
        raise UserError(f"seed (--seed) must be from 0 to 2**32-1, got {value('seed')}.")
    if config.use_peft:
        import importlib.util

        if importlib.util.find_spec("peft") is None:
            raise UserError("use_peft (--use-peft) needs the peft package; pip install 's1[lora]' (or peft).")
        if config.lora_r < 1 or config.lora_alpha <= 0 or not 0 <= config.lora_dropout < 1:
            raise UserError(
                f"lora_r must be at least 1, lora_alpha above 0 and lora_dropout from 0 up to 1; got {config.lora_r}, "
                f"{config.lora_alpha} and {config.lora_dropout}."
            )
        if config.lora_target_modules is not None and not config.lora_target_modules:
            raise UserError("lora_target_modules lists no module; name some (q_proj,v_proj) or leave it out.")
    report = value("report_to")
    for target in [report] if isinstance(report, str) else list(report or []):
        if target not in REPORT_TO and target != "all":
            raise UserError(f"report_to (--report-to) must be one of {', '.join(REPORT_TO)}, got {target!r}.")
        if target not in ("none", "all"):
            import importlib.util

            if importlib.util.find_spec(target) is None:
                raise UserError(f"--report-to {target} needs the {target} package; pip install {target}.")
