"""Nothing lost: run directories that know their kind, writes that are whole or not at all (a full disk, a
file-size limit), and the paths that used to end in a traceback (samples.jsonl a directory, a plot format
matplotlib cannot write). Each drives the real command line on real files."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from s1.core.errors import UserError
from s1.core.files import append_line, write_atomic
from s1.core.rundir import MARKER, claim_directory, directory_kind, unlock_directory
from tests.conftest import DATA
from tests.evaluate.test_evaluate import s1

FIXTURE_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "eval_run_b86fcda" / "run"


def eval_args(model: Path, data: Path, out: Path, caps: str = "8") -> list[str]:
    return [
        "eval",
        "--model",
        str(model),
        "--data",
        str(data),
        "--limit",
        "2",
        "--max-thinking-tokens",
        caps,
        "--max-answer-tokens",
        "4",
        "--output",
        str(out),
    ]


def curate_config(tmp_path: Path) -> Path:
    path = tmp_path / "curate.yaml"
    path.write_text(
        yaml.safe_dump({"sources": [{"name": "amc", "path": str(DATA / "amc23.jsonl")}], "eval_sets": []}),
        encoding="utf-8",
    )
    return path


def one_sentence(run: subprocess.CompletedProcess, *words: str) -> None:
    assert run.returncode == 1, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert "Traceback" not in run.stderr and len(errors) == 1, run.stderr[-2000:]
    for w in words:
        assert w in run.stderr, run.stderr[-2000:]


@pytest.fixture
def problems_file(tmp_path):
    rows = [json.loads(line) for line in (DATA / "math500.jsonl").read_text().splitlines()[:2]]
    path = tmp_path / "two.jsonl"
    path.write_text(
        "".join(json.dumps({"id": r["unique_id"], "problem": r["problem"], "answer": r["answer"]}) + "\n" for r in rows)
    )
    return path


# ------------------------------------------------------------------------------------------ kinds


def test_a_directory_written_before_markers_is_known_by_its_files(tmp_path):
    cases = {
        "curate": ["curate.sqlite"],
        "eval": ["samples.jsonl"],
        "eval ": ["summary.json"],
        "train": ["recipe.json"],
        "train ": ["checkpoint-4/trainer_state.json"],
    }
    for kind, files in cases.items():
        directory = tmp_path / kind.strip() / str(len(files[0]))
        for name in files:
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text("{}")
        assert directory_kind(directory) == kind.strip(), files
    history = tmp_path / "history-only"
    history.mkdir()
    (history / "history.jsonl").write_text(json.dumps({"stages": ["collect"], "config": {}}) + "\n")
    assert directory_kind(history) == "curate"
    assert directory_kind(tmp_path / "nothing-here") is None


def test_a_claimed_directory_refuses_another_kind_and_keeps_its_marker(tmp_path):
    lock = claim_directory(tmp_path / "run", "eval")
    unlock_directory(lock)
    assert json.loads((tmp_path / "run" / MARKER).read_text()) == {"kind": "eval"}
    with pytest.raises(UserError, match="holds an s1 eval run, and s1 curate does not write"):
        claim_directory(tmp_path / "run", "curate")
    unlock_directory(claim_directory(tmp_path / "run", "eval"))  # its own kind comes back in


def test_runs_of_different_kinds_never_share_a_directory(tmp_path, tiny_dir, problems_file):
    """curate into an eval run and back, train into either, eval into a train run: each refused with one
    sentence, and each directory's history.jsonl keeps only its own kind's lines."""
    evals, curates, trains = tmp_path / "eval-run", tmp_path / "curate-run", tmp_path / "train-run"
    assert s1(*eval_args(tiny_dir, problems_file, evals)).returncode == 0
    config = curate_config(tmp_path)
    made = s1("curate", "collect", str(config), "--output", str(curates))
    assert made.returncode == 0, made.stderr[-2000:]
    histories = {d: (d / "history.jsonl").read_text() for d in (evals, curates)}

    one_sentence(s1("curate", "collect", str(config), "--output", str(evals)), "holds an s1 eval run")
    one_sentence(s1(*eval_args(tiny_dir, problems_file, curates)), "holds an s1 curate run")
    s1k = tmp_path / "s1k.jsonl"
    s1k.write_text(json.dumps({"question": "q", "thinking": "t", "answer": "1"}) + "\n")
    for target, kind in ((evals, "eval"), (curates, "curate")):
        train = s1("train", "--model", str(tiny_dir), "--data", str(s1k), "--output", str(target), "--max-steps", "1")
        one_sentence(train, f"holds an s1 {kind} run", "s1 train does not write")
    for d, text in histories.items():
        assert (d / "history.jsonl").read_text() == text, "history.jsonl of another kind was appended to"

    (evals / MARKER).unlink()  # written before markers existed: its samples still say what it is
    one_sentence(s1("curate", "collect", str(config), "--output", str(evals)), "holds an s1 eval run")
    trains.mkdir()
    (trains / "recipe.json").write_text("{}")
    one_sentence(s1(*eval_args(tiny_dir, problems_file, trains)), "holds an s1 train run")
    assert sorted(p.name for p in trains.iterdir()) == ["recipe.json"]


def test_a_model_directory_is_no_commands_output(tmp_path, tiny_dir, problems_file):
    """--output and --model swapped: eval and train used to write their files into the model's directory."""
    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    before = sorted(p.name for p in model.iterdir())
    one_sentence(s1(*eval_args(model, problems_file, model)), "holds a model (config.json and its weights)")
    s1k = tmp_path / "s1k.jsonl"
    s1k.write_text(json.dumps({"question": "q", "thinking": "t", "answer": "1"}) + "\n")
    train = s1("train", "--model", str(tiny_dir), "--data", str(s1k), "--output", str(model), "--max-steps", "1")
    one_sentence(train, "s1 train does not write into a model directory")
    for kind in ("curate", "demo"):
        with pytest.raises(UserError, match="holds a model"):
            claim_directory(model, kind)
    assert sorted(p.name for p in model.iterdir()) == before, "a refused model directory was written into"


# ------------------------------------------------------------------------------------------ failing writes


def test_whole_file_writes_leave_the_old_file_or_the_new_one(tmp_path):
    target = tmp_path / "summary.json"
    write_atomic(target, "old\n")
    os.chmod(target, 0o644)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource, signal, sys; from s1.core.files import write_atomic, append_line\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
            "for f in (lambda: write_atomic(sys.argv[1], 'x' * 5000), lambda: append_line(sys.argv[2], 'y' * 5000)):\n"
            "    try: f()\n"
            "    except Exception as e: print(type(e).__name__, e)\n",
            str(target),
            str(tmp_path / "lines.jsonl"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src")),
    )
    said = child.stdout.splitlines()
    assert len(said) == 2 and all(line.startswith("UserError Cannot write") for line in said), child
    assert "file size limit" in said[0] and "nothing finished before it is lost" in said[0]
    assert target.read_text() == "old\n" and oct(target.stat().st_mode & 0o777) == "0o644"
    assert (tmp_path / "lines.jsonl").read_bytes() == b"", "half a line was left behind"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lines.jsonl", "summary.json"], "a temporary file was left"
    append_line(tmp_path / "lines.jsonl", "{}")
    assert (tmp_path / "lines.jsonl").read_text() == "{}\n"


def _limited(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _all_whole(run_dir: Path) -> None:
    """Every file the run left is complete: JSON parses, the plot is a whole PNG, samples are whole lines."""
    for path in run_dir.iterdir():
        assert not path.name.startswith(".") or path.name in (".lock", MARKER), f"temporary file {path.name} left"
    if (run_dir / "summary.json").exists():
        json.loads((run_dir / "summary.json").read_text())
    if (run_dir / "scaling.png").exists():
        assert (run_dir / "scaling.png").read_bytes().endswith(b"IEND\xaeB`\x82"), "a truncated plot"
    text = (run_dir / "samples.jsonl").read_text() if (run_dir / "samples.jsonl").exists() else ""
    assert not text or text.endswith("\n")
    for line in text.splitlines():
        json.loads(line)


def test_a_file_size_limit_during_eval_is_one_sentence_and_the_run_resumes(tmp_path, tiny_dir, problems_file):
    """The portable case of a full disk: writes past `ulimit -f` fail. First a limit hit by the plot of a run
    whose samples are all there (the old plot stays whole), then one hit by the samples themselves."""
    out = tmp_path / "run"
    args = eval_args(tiny_dir, problems_file, out)
    assert s1(*args).returncode == 0
    plot = (out / "scaling.png").read_bytes()
    biggest_other = max(p.stat().st_size for p in out.iterdir() if p.name != "scaling.png")
    assert len(plot) > biggest_other + 4096, "the plot must be the largest file for this case"
    again = s1(*args, preexec_fn=_limited(len(plot) - 1))
    one_sentence(again, "Cannot write", "scaling.png", "file size limit", "run the same command again")
    assert (out / "scaling.png").read_bytes() == plot, "the old plot was truncated"
    _all_whole(out)

    fresh = tmp_path / "fresh"
    samples = s1(*eval_args(tiny_dir, problems_file, fresh, "8,16,24"), preexec_fn=_limited(6000))
    one_sentence(samples, "Cannot write", "file size limit")
    _all_whole(fresh)
    kept = (fresh / "samples.jsonl").read_text().splitlines() if (fresh / "samples.jsonl").exists() else []
    resumed = s1(*eval_args(tiny_dir, problems_file, fresh, "8,16,24"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = (fresh / "samples.jsonl").read_text().splitlines()
    assert after[: len(kept)] == kept and len({json.loads(line)["identity"] for line in after}) == len(after) == 6


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="this kernel forbids user namespaces (`unshare -rm`), so no tmpfs")
def test_a_full_disk_during_eval_is_one_sentence_and_nothing_is_truncated(tmp_path, tiny_dir, problems_file):
    """A real full file system: a small tmpfs in a user and mount namespace, holding a finished run with a
    few pages to spare, so the plot cannot be written (before: OSError 28 and a 0-byte scaling.png)."""
    out = tmp_path / "run"
    args = eval_args(tiny_dir, problems_file, out)
    assert s1(*args).returncode == 0
    plot = (out / "scaling.png").read_bytes()
    pages = sum(-(-p.stat().st_size // 4096) for p in out.iterdir())
    spare = max(-(-(out / "summary.json").stat().st_size // 4096), -(-(out / "summary.md").stat().st_size // 4096)) + 2
    assert spare * 4096 < len(plot), "the plot must not fit in the spare pages"
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    script = (
        f"mount -t tmpfs -o size={(pages + spare) * 4096} tmpfs {disk} && cp -a {out} {disk}/run && "
        f"{sys.executable} -m s1 {' '.join(args[:-1])} {disk}/run 2> {tmp_path}/stderr; "
        f"echo $? > {tmp_path}/rc; cp -a {disk}/run {kept}"
    )
    subprocess.run(["unshare", "-rm", "sh", "-c", script], env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600)
    stderr = (tmp_path / "stderr").read_text()
    assert (tmp_path / "rc").read_text().strip() == "1" and "Traceback" not in stderr, stderr[-2000:]
    assert "the disk is full" in stderr and "scaling.png" in stderr, stderr
    assert (kept / "scaling.png").read_bytes() == plot
    _all_whole(kept)


# ------------------------------------------------------------------------------------------ tracebacks


def test_samples_jsonl_that_is_a_directory_is_one_sentence(tmp_path, tiny_dir, problems_file):
    out = tmp_path / "run"
    (out / "samples.jsonl").mkdir(parents=True)
    one_sentence(s1(*eval_args(tiny_dir, problems_file, out)), "samples.jsonl is not a file")
    report = tmp_path / "report"
    report.mkdir()
    (report / "summary.json").write_text(json.dumps({"benchmarks": {}}))
    (report / "samples.jsonl").mkdir()
    one_sentence(
        s1("report", str(report), "--plot", str(tmp_path / "p.png"), "--html", str(tmp_path / "r.html")),
        "is not a file",
    )


def test_a_plot_format_matplotlib_cannot_write_names_those_it_can(tmp_path, tiny_dir, problems_file):
    out = tmp_path / "run"
    assert s1(*eval_args(tiny_dir, problems_file, out)).returncode == 0
    one_sentence(s1("report", str(out), "--plot", str(tmp_path / "out.xyz")), "does not write .xyz", ".png", ".svg")
    assert not list(tmp_path.glob("*out.xyz*"))
    assert s1("report", str(out), "--plot", str(tmp_path / "out.svg")).returncode == 0
    assert (tmp_path / "out.svg").read_text().rstrip().endswith("</svg>")


def test_a_plot_where_no_file_can_be_made_says_so_rather_than_a_missing_folder():
    """/proc exists but takes no new files; the sentence used to say "its folder does not exist"."""
    run = FIXTURE_RUN
    one_sentence(s1("report", str(run), "--plot", "/proc/s1-plot.png"), "its folder does not take new files")
    one_sentence(s1("report", str(run), "--plot", "/no/such/folder/p.png"), "its folder does not exist")


def test_a_curation_store_the_disk_refuses_is_one_sentence(tmp_path):
    """sqlite's own error (a traceback before) becomes the one sentence; the store keeps what was committed."""
    config = tmp_path / "curate.yaml"
    config.write_text(
        yaml.safe_dump({"sources": [{"name": "m", "path": str(DATA / "math500.jsonl")}], "eval_sets": []})
    )
    out = tmp_path / "run"
    failed = s1("curate", "collect", str(config), "--output", str(out), preexec_fn=_limited(40_000))
    one_sentence(failed, f"Cannot write {out / 'curate.sqlite'}")
    again = s1("curate", "collect", str(config), "--output", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "pool 500" in again.stderr
