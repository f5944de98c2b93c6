"""lm-evaluation-harness task files, read as they are, turned into s1's own task fields (benchmarks.py `Task`).

People bring the YAML files they already run with lm-eval (its stock `gsm8k.yaml`, their own generation
tasks). For a generation task every field either has an s1 meaning, or is superseded by budget forcing
and said so once on stderr, or cannot be honoured; all of the last kind are named in ONE error, so a user
fixes a file in one go. The mapping (the README's "lm-evaluation-harness task files" table):

- data: `dataset_path` json/csv/parquet with `dataset_kwargs.data_files` -> that local file; a hub id whose
  shipped s1 task names the same dataset (`gsm8k` or `openai/gsm8k`) -> that task's local data file, so
  a stock task runs offline from `--data-dir`; any other hub id is loaded with `datasets`.
- prompt: `description`, `num_fewshot` examples from `fewshot_split` (joined as lm-eval joins them:
  `target_delimiter`, `fewshot_delimiter`), then `doc_to_text`.
- grading: `metric_list` exact_match -> s1's math grading (math-verify equivalence, which accepts what an
  exact match accepts); its `regexes_to_ignore` cut the gold answer down as lm-eval cuts both sides.
- superseded: `generation_kwargs` (budget forcing bounds thinking and answer; `until: ["\\n\\n"]` would end
  a reasoning model's thinking) and answer-extracting filters (regex, take_first, ...), replaced by s1's
  extraction of the final answer (last \\boxed{}, "Answer:" line).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from s1.core.errors import UserError, first_line

log = logging.getLogger("s1.data")

LOCAL_BUILDERS = ("json", "csv", "parquet")
"""`datasets` builders whose `data_files` are local files s1 reads itself."""
IGNORED = {
    "group",
    "tag",
    "task_alias",
    "group_alias",
    "metadata",
    "training_split",
    "validation_split",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "dataset_name",
}
"""lm-eval fields with no bearing on what s1 generates or grades (dataset_name is used where the data is a hub id)."""
SUPERSEDED_GENERATION = {"until", "max_gen_toks", "do_sample", "temperature", "top_p", "top_k"}
EXTRACTING_FILTERS = {"regex", "take_first", "remove_whitespace", "lowercase", "uppercase", "majority_vote"}
METRIC_OPTIONS = {"metric", "aggregation", "higher_is_better", "ignore_case", "ignore_punctuation", "regexes_to_ignore"}


class Code:
    """A `!function module.name` value: Python that lm-eval imports; s1 never runs code from a task file."""

    def __init__(self, name: str):
        self.name = name


def load_yaml(path: Path, _including: tuple[Path, ...] = ()) -> object:
    """A task file with lm-eval's `!function` tag read as a `Code` marker and `include:` merged (the included
    file first, this file's fields over it), as lm-eval reads it."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: Code(str(loader.construct_scalar(node))))
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read task file {path} ({exc.__class__.__name__}); check the path.") from None
    except yaml.YAMLError as exc:
        raise UserError(f"Task file {path} is not valid YAML ({first_line(exc)}).") from None
    if isinstance(raw, dict) and isinstance(raw.get("include"), str):
        base = (path.parent / raw["include"]).resolve()
        chain = (*_including, path.resolve())
        if base in chain:
            raise UserError(f"Task file {path} includes {base}, which includes it again; break the include: cycle.")
        included = load_yaml(base, chain)
        if not isinstance(included, dict):
            raise UserError(f"Task file {base}, included by {path}, must be a YAML mapping of fields.")
        raw = {**included, **{k: v for k, v in raw.items() if k != "include"}}
    return raw


def is_lm_eval(raw: dict, own: set[str]) -> bool:
    """A task written for lm-eval: it names a field s1's own task format does not have."""
    return any(key not in own for key in raw)


def translate(raw: dict, own: set[str], where: str, shipped: dict[str, dict]) -> dict:
    """lm-eval's fields -> s1's task fields; every field that cannot be honoured is named in one UserError.

    `shipped` is each shipped s1 task's raw fields by name: their dataset_path / data_file pairs map a hub
    dataset to its local file."""
    out: dict = {k: v for k, v in raw.items() if k in own}
    problems: list[str] = []
    superseded: list[str] = []

    def code(value, name: str) -> bool:
        if isinstance(value, Code):
            problems.append(f"{name} (!function {value.name}: s1 does not run Python from a task file)")
            return True
        return False

    for key in ("doc_to_text", "doc_to_target", "description", "task"):
        code(raw.get(key), key)
    for key in ("doc_to_text", "doc_to_target"):
        value = raw.get(key)
        if isinstance(value, str) and re.fullmatch(r"[A-Za-z_]\w*", value):
            out[key] = "{{ doc[" + repr(value) + "] }}"  # lm-eval: a bare field name is that field of the record
    output_type = raw.get("output_type", "generate_until")
    if output_type != "generate_until":
        problems.append(
            f"output_type {output_type!r} (s1 grades generated answers; for loglikelihood tasks run lm-eval's "
            "local-completions model against s1 serve)"
        )
    description = raw.get("description")
    if isinstance(description, str) and description:
        out["preamble"] = description
    out.pop("description", None)
    for key in ("target_delimiter", "fewshot_delimiter", "fewshot_split"):
        if key in raw and not code(raw[key], key):
            out[key] = raw[key]
    if "num_fewshot" in raw:
        out["num_fewshot"] = raw["num_fewshot"]
    if raw.get("fewshot_config") not in (None, {}):
        problems.append("fewshot_config (s1 draws few-shot examples at random from fewshot_split)")
    repeats = raw.get("repeats", 1)
    if repeats != 1:
        problems.append(f"repeats {repeats!r} (pass --samples {repeats} for several samples per problem)")
    for key in ("process_docs", "process_results", "doc_to_choice", "doc_to_image", "doc_to_audio", "unsafe_code"):
        if raw.get(key) not in (None, False):
            problems.append(f"{key} (not a generation task's field s1 can apply)")
    _data(raw, out, problems, shipped)
    _metrics(raw.get("metric_list"), out, problems)
    _filters(raw.get("filter_list"), problems, superseded)
    kwargs = raw.get("generation_kwargs") or {}
    if not isinstance(kwargs, dict):
        problems.append("generation_kwargs (must be a mapping)")
        kwargs = {}
    for name in kwargs:
        if name in SUPERSEDED_GENERATION:
            superseded.append(f"generation_kwargs.{name}")
        else:
            problems.append(f"generation_kwargs.{name} (no s1 equivalent)")
    known = own | IGNORED | {
        "output_type", "description", "target_delimiter", "fewshot_delimiter", "fewshot_split", "num_fewshot",
        "fewshot_config", "repeats", "process_docs", "process_results", "doc_to_choice", "doc_to_image",
        "doc_to_audio", "unsafe_code", "dataset_kwargs", "metric_list", "filter_list", "generation_kwargs",
        "include",
    }  # fmt: skip
    for key in raw:
        if key not in known:
            problems.append(f"unknown field {key!r}")
    if problems:
        raise UserError(
            f"The {where} has fields s1 cannot honour: {'; '.join(problems)}. Remove or change them (s1 reads "
            "lm-eval generation tasks: dataset_path/dataset_kwargs, test_split, fewshot_split/num_fewshot, "
            "doc_to_text, doc_to_target, generation_kwargs, filter_list, metric_list exact_match)."
        )
    if superseded:
        log.warning(
            "Note: the %s uses %s, which budget forcing and s1's answer extraction supersede (set the budget with "
            "--max-thinking-tokens and --max-answer-tokens, decoding with --temperature).",
            where,
            ", ".join(dict.fromkeys(superseded)),
        )
    return out


def _data(raw: dict, out: dict, problems: list[str], shipped: dict[str, dict]) -> None:
    """Where the records come from: a local file named in dataset_kwargs, or a hub id mapped to a shipped
    task's local file, or the hub."""
    path = raw.get("dataset_path")
    kwargs = raw.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict):
        problems.append("dataset_kwargs (must be a mapping)")
        return
    split = raw.get("test_split") or "test"
    out["test_split"] = split
    for key in kwargs:
        if key not in ("data_files", "trust_remote_code"):
            problems.append(f"dataset_kwargs.{key} (s1 reads local files and plain hub datasets only)")
    if path in LOCAL_BUILDERS:
        files = kwargs.get("data_files")
        chosen = files.get(split) if isinstance(files, dict) else files
        if isinstance(chosen, list) and len(chosen) == 1:
            chosen = chosen[0]
        if not isinstance(chosen, str):
            problems.append(f"dataset_kwargs.data_files (name one file for the {split!r} split)")
            return
        out["data_file"] = chosen
        out.pop("dataset_path", None)
        shots = files.get(raw.get("fewshot_split")) if isinstance(files, dict) else None
        if isinstance(shots, str):
            out["fewshot_data_file"] = shots
        return
    if not isinstance(path, str) or not path:
        if not raw.get("data_file"):
            problems.append("dataset_path (name a hub dataset, or json with dataset_kwargs.data_files)")
        return
    for task in shipped.values():
        theirs = task.get("dataset_path") or ""
        same = theirs == path or theirs.rsplit("/", 1)[-1].lower() == path.rsplit("/", 1)[-1].lower()
        if same and task.get("data_file") and task.get("test_split", "test") == split:
            if raw.get("dataset_name") in (None, task.get("dataset_name")):
                out.setdefault("data_file", task["data_file"])
                fewshot = raw.get("fewshot_split")
                if isinstance(fewshot, str):  # gsm8k_test.jsonl -> gsm8k_train.jsonl, when the folder has it
                    out["fewshot_data_file"] = task["data_file"].replace(f"_{split}.", f"_{fewshot}.")
                break


def _metrics(metrics, out: dict, problems: list[str]) -> None:
    if metrics is None:
        return
    if not isinstance(metrics, list):
        problems.append("metric_list (must be a list)")
        return
    ignore: list[str] = []
    for entry in metrics:
        name = entry.get("metric") if isinstance(entry, dict) else None
        if isinstance(name, Code) or name != "exact_match":
            shown = f"!function {name.name}" if isinstance(name, Code) else repr(name)
            problems.append(f"metric_list metric {shown} (s1 grades by answer equivalence: exact_match)")
            continue
        for option in entry:
            if option not in METRIC_OPTIONS:
                problems.append(f"metric_list exact_match option {option!r}")
        if entry.get("aggregation", "mean") != "mean":
            problems.append(f"metric_list exact_match aggregation {entry.get('aggregation')!r} (s1 reports means)")
        regexes = entry.get("regexes_to_ignore") or []
        for pattern in regexes if isinstance(regexes, list) else [regexes]:
            try:
                re.compile(str(pattern))
            except re.error:
                problems.append(f"metric_list regexes_to_ignore {pattern!r} (not a valid regular expression)")
            else:
                ignore.append(str(pattern))
    if ignore:
        out["target_ignore"] = ignore
    out.setdefault("answer_kind", "math")


def _filters(filters, problems: list[str], superseded: list[str]) -> None:
    if filters is None:
        return
    if not isinstance(filters, list):
        problems.append("filter_list (must be a list)")
        return
    for chain in filters:
        steps = chain.get("filter") if isinstance(chain, dict) else None
        for step in steps if isinstance(steps, list) else [None]:
            function = step.get("function") if isinstance(step, dict) else None
            if function in EXTRACTING_FILTERS:
                superseded.append(f"filter {function}")
            else:
                shown = f"!function {function.name}" if isinstance(function, Code) else repr(function)
                problems.append(f"filter_list function {shown} (only answer-extracting filters are replaced)")
