"""The results file in lm-evaluation-harness's schema, from a real run directory's summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

from s1.report.compare import load_summary
from s1.report.lm_eval_results import write_results

RUN = Path(__file__).parents[1] / "fixtures" / "eval_run_b86fcda" / "run"


def test_results_file_has_lm_evals_keys_and_fractions(tmp_path):
    summary = load_summary(str(RUN))
    path = write_results(tmp_path, summary, {"two_math": {"task": "two_math", "num_fewshot": 0}})
    assert path.parent == tmp_path and path.name.startswith("results_") and path.suffix == ".json"
    document = json.loads(path.read_text())
    assert {"results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config", "git_hash"} <= set(
        document
    )
    assert isinstance(document["date"], float)
    scores = document["results"]["two_math"]
    rows = summary.benchmarks["two_math"].settings
    for row in rows:  # every setting is one "metric,filter" pair, its accuracy as a fraction, with its stderr
        key = f"{row.method} {row.setting}"
        assert math.isclose(scores[f"exact_match,{key}"], row.accuracy / 100)
        p, n = row.accuracy / 100, row.problems
        assert math.isclose(scores[f"exact_match_stderr,{key}"], math.sqrt(p * (1 - p) / (n - 1)))
        assert scores[f"mean_thinking_tokens,{key}"] == row.mean_thinking_tokens
    assert document["n-samples"]["two_math"] == {"original": 2, "effective": 2}
    assert document["configs"]["two_math"]["output_type"] == "generate_until"
    assert document["model_name"] == summary.model
