"""The curation config: one YAML file, declared here once and validated before any work starts.

Input paths (sources, evaluation-set files, `data_dir`, the domain list) are relative to the config
file, so a config runs the same from any folder; `output` is relative to where you run, like every
other `--output` of s1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from s1.core.errors import UserError
from s1.core.forcing import BudgetForcing
from s1.core.sampling import ADDED as SAMPLING_ADDED
from s1.core.sampling import Sampling, derive_seed
from s1.core.settings import declared
from s1.core.unicode import refuse_lone_surrogates
from s1.curate.selection import STRATEGIES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Strict):
    """One pool source: a local file (JSONL/CSV/JSON/Parquet) or a hub dataset, and its field mapping."""

    name: str = Field(min_length=1)
    path: str | None = None
    hub: str | None = None
    subset: str | None = None
    split: str = "train"
    fields: dict[str, str] = {}
    """Pool field -> this source's field: question, solution, answer, id, cot_type."""
    cot_type: str = "math"
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_place(self):
        if (self.path is None) == (self.hub is None):
            raise ValueError(f"source {self.name!r} needs exactly one of path (a local file) or hub (a dataset id)")
        unknown = set(self.fields) - {"question", "solution", "answer", "id", "cot_type"}
        if unknown:
            raise ValueError(
                f"source {self.name!r} maps unknown pool field {sorted(unknown)[0]!r}; "
                "map question, solution, answer, id or cot_type"
            )
        return self


ROLE_KEYS = {"max_answer_tokens": "max_tokens", "batch_size": "concurrency"}
"""A role's key for a setting where it is not the setting's own name: a role's `max_tokens` is the length of its
reply (a teacher's attempt after thinking, a solver's solution, a judge's or classifier's verdict); its
`concurrency` is the batch an in-process engine runs."""
ADDED_KEYS = ("min_thinking_tokens", "num_ignore", "extensions", "answer_prefix", "thinking_grace_tokens")
"""Forcing keys roles gained after run directories existed: left out of a role's cache key at their defaults."""


def _decoding() -> dict:
    """A role's decoding keys: the settings declared on `BudgetForcing` (a teacher's thinking; the whole-output
    bound `max_tokens` is not one) and `Sampling`, under their role keys, with their types, defaults and ranges."""
    keys = {}
    for d in declared(BudgetForcing) + declared(Sampling):
        if d.name != "max_tokens":
            keys[ROLE_KEYS.get(d.name, d.name)] = (d.type, Field(default=d.default, description=d.help, **d.bounds()))
    # a curation is reproducible unless told otherwise; retries add to the seed, so it stays below 2**62
    keys["seed"] = (int, Field(default=0, ge=0, lt=2**62, description="Seed of the role's first call."))
    return keys


def role_key(setting: str) -> str:
    """A setting's key in a role (`max_answer_tokens` -> `max_tokens`)."""
    return ROLE_KEYS.get(setting, setting)


_Decoding = create_model("_Decoding", __base__=_Strict, **_decoding())


class Role(_Decoding):
    """A model that curation calls: any engine of the project, its model and its decoding settings (the forcing
    keys apply to the teacher, the one role that thinks)."""

    engine: Literal["hf", "reprefill", "llamacpp", "remote", "python"] = "llamacpp"
    model: str = "smollm2"
    """A model name, path or hub id; for the python engine, `module:function` (see calls.py)."""
    base_urls: list[str] = []
    remote_mode: Literal["auto", "ids", "text"] = "auto"
    format: Literal["s1", "r1"] = "s1"
    concurrency: int | None = Field(default=None, ge=1, le=1024)
    """Calls handed to the engine at once (remote: in flight, spread over base_urls; hf and llamacpp:
    batched). Default 8."""
    retries: int = Field(default=2, ge=0, le=20)
    """Tries after a failed call (the remote engine retries each HTTP request on its own as well)."""
    system: str | None = None
    prompt: str | None = None
    """The user message, with {question} (and for the judge {solution}, {attempt}; the classifier {domains})."""
    constrained: bool = True
    """Judge and classifier: restrict decoding to the valid replies where the engine allows it."""

    @model_validator(mode="after")
    def _default_concurrency(self):
        if self.engine == "python" and (":" not in self.model or not all(self.model.split(":", 1))):
            raise ValueError(f"a python role names its function as module:function, got {self.model!r}")
        if self.concurrency is None:
            self.concurrency = 8
        self.forcing()  # checked by the class that checks forcing settings (one sentence naming the setting)
        return self

    def forcing(self) -> BudgetForcing:
        """The teacher's budget (thinking, then an answer of `max_tokens`)."""
        return BudgetForcing(
            **{d.field: getattr(self, role_key(d.name)) for d in declared(BudgetForcing) if d.name != "max_tokens"}
        )

    def sampling(self, attempt: int, temperature: float | None = None) -> Sampling:
        """The decoding of the `attempt`-th try of a call (a retry draws from its own seed)."""
        return Sampling(
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p,
            seed=derive_seed(self.seed, attempt),
            **{name: getattr(self, name) for name in SAMPLING_ADDED},
        )

    def key(self) -> dict:
        """What identifies this role's replies in the call cache (base URLs and concurrency do not)."""
        key = self.model_dump(exclude={"base_urls", "remote_mode", "concurrency", "retries"})
        for name in ADDED_KEYS + SAMPLING_ADDED:
            if key[name] == Role.model_fields[name].default:
                del key[name]  # so caches written before these keys existed still answer
        return key


class Preselect(_Strict):
    """The paper's pre-selection: teacher-correct questions of some sources, and long teacher-correct ones of others."""

    sources: list[str] = []
    long_sources: list[str] = []
    min_trace_tokens: int = Field(default=5600, ge=0)


class Selection(_Strict):
    """How the N questions are chosen (selection.py: Algorithm 1, the notebook's procedure, Table 2's ablations)."""

    n: int = Field(default=1000, ge=1)
    strategy: Literal[STRATEGIES] = "s1"
    seed: int = Field(default=0, ge=0)
    preselect: Preselect | None = None
    uniform_picks: int = Field(default=700, ge=0)
    """notebook: domains are uniform until this many questions are chosen (pre-selected ones counted)."""
    benchmark_mix: dict[str, float] = {"AIME": 1.0, "GPQA": 0.5}
    """notebook: source -> weight of its domains after `uniform_picks` (the first source's counts as they are,
    each other's scaled to weight x the first's total)."""

    @field_validator("benchmark_mix")
    @classmethod
    def _positive_weights(cls, mix):
        for source, weight in mix.items():
            if not weight > 0:
                raise ValueError(f"gives source {source!r} weight {weight}; every weight must be above 0")
        return mix


class Roles(_Strict):
    teacher: Role = Role()
    solvers: list[Role] = Field(default_factory=lambda: [Role()], min_length=1)
    judge: Role = Role()
    classifier: Role = Role()


class CurateConfig(_Strict):
    output: str | None = None
    sources: list[Source] = Field(min_length=1)
    eval_sets: list[str] = []
    """Benchmark names from `s1 eval`'s registry (aime24, math500, gpqa ...) or files of questions."""
    data_dir: str | None = None
    """Folder with the named evaluation sets' files (else $S1_DATA_DIR, else the hub)."""
    ngram: int = Field(default=8, ge=1, le=64)
    roles: Roles = Roles()
    student: str = "smollm2"
    """The model to be trained: trace lengths are counted in its tokenizer."""
    short_answer_chars: int = Field(default=64, ge=0)
    """References up to this long are graded with math-verify; longer ones (proofs) by the judge."""
    domains: str | None = None
    """A JSON object code -> name (default: the MSC top-level list shipped with s1)."""
    domain_details: bool = False
    """List each domain with its descriptions (msc.json's `prompt`, as the paper did), not just its title."""
    selection: Selection = Selection()
    base_dir: str = "."
    """Folder that relative input paths start from (set to the config file's folder when loading)."""

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources):
        names = [s.name for s in sources]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two sources are named {name!r}; give each source its own name")
        return sources

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


def _describe(error: ValidationError, where: str) -> str:
    first = error.errors()[0]
    place = ".".join(str(p) for p in first["loc"]) or "the top level"
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, UserError):  # a setting's own check: name it by its key in this config
        return f"{where}: {worded(cause, place)}"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "is not a setting s1 curate knows; check its spelling against configs/curate/paper.yaml"
    return f"{where}: {place} {message}."


def worded(error: UserError, role: str) -> str:
    """A library error about a setting in this config's terms: `roles.teacher.base_urls`, not --base-url."""
    return error.worded(lambda setting: f"{role}.{role_key(setting)}")


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The config's mapping, with the config it `extends` (a path from its own folder) under it: mappings merge
    key by key, anything else is replaced. So an ablation is a few lines over the config it varies (the paper's
    Table 2 recipes in configs/paper/ are `selection.strategy` over configs/curate/paper.yaml). Relative input paths
    start from the folder of the file that names the sources: the base's, unless this file names its own."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read config {path} ({exc.__class__.__name__}); check the path.") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" near line {line + 1}" if line is not None else ""
        raise UserError(f"Config {path} is not valid YAML{at}; fix its syntax.") from None
    raw = refuse_lone_surrogates(raw, f"Config {path}")
    if not isinstance(raw, dict):
        raise UserError(
            f"Config {path} must be a YAML mapping with sources, roles and selection; see configs/curate/embedded.yaml."
        )
    raw.setdefault("base_dir", str(path.resolve().parent))
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise UserError(f"Config {path}: extends must be the path of another curation config; fix it.")
    parent = (path.resolve().parent / base).resolve()
    if parent in seen or parent == path.resolve():
        raise UserError(f"Config {path}: extends {base} comes back to a config already read; break the loop.")
    if not parent.is_file():
        raise UserError(f"Config {path}: extends {base}, which is not a file ({parent}); check the path.")
    under = _read(parent, (*seen, path.resolve()))
    if "sources" not in raw:  # the sources come from the base: their paths start from its folder
        raw["base_dir"] = under["base_dir"]
    return _merge(under, raw)


def _merge(under: dict, over: dict) -> dict:
    out = dict(under)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path, output: str | None = None) -> CurateConfig:
    """Read and check a config; every problem is one sentence naming the setting."""
    path = Path(path)
    raw = _read(path)
    try:
        config = CurateConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(_describe(exc, f"Config {path}")) from None
    if config.selection.strategy == "notebook":
        names = [s.name for s in config.sources]
        for source in config.selection.benchmark_mix:
            if source not in names:
                raise UserError(
                    f"Config {path}: selection.benchmark_mix names {source!r}, which is not a source of this config; "
                    f"name the benchmark sources by their names ({', '.join(names)})."
                )
    if output is not None:
        config.output = output
    if not config.output:
        raise UserError(f"Config {path} names no output directory; add `output: runs/curate` or pass --output.")
    return config
