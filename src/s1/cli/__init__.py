"""Thin Typer layer over the library: parse options, call, print. Errors become one sentence."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

from s1.core import signals
from s1.core.errors import UserError
from s1.core.signals import Terminated

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="s1: budget forcing and test-time scaling for reasoning models."
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


RemoteMode = Literal["auto", "ids", "text"]
REMOTE_MODE_HELP = (
    "--engine remote: ids (token ids: vLLM, s1 serve), text (llama.cpp's server) or auto (ask each server once)."
)


@app.callback()
def _root() -> None:
    """s1: budget forcing and test-time scaling for reasoning models."""


def read_questions(path: Path) -> list[str]:
    """Questions from a JSONL file: each line a JSON string or an object with a question/problem/prompt field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"Cannot read input file {path} ({exc.__class__.__name__}); check the path and that it is UTF-8 text."
        ) from None
    questions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"Line {number} of {path} is not valid JSON; write one JSON object per line.") from None
        if isinstance(item, dict):
            item = next((item[k] for k in ("question", "problem", "prompt") if k in item), None)
        if not isinstance(item, str) or not item.strip():
            raise UserError(f'Line {number} of {path} has no question; give each line a non-empty "question" field.')
        questions.append(item)
    if not questions:
        raise UserError(f"Input file {path} holds no questions.")
    return questions


class _Streamer:
    """Prints one sequence's thinking (dimmed) and then its answer as tokens arrive."""

    def __init__(self, tokenizer, format_tokens):
        from s1.core.detokenize import ThinkingSplitter

        self.splitter = ThinkingSplitter(tokenizer, format_tokens)
        self.answering = False

    def __call__(self, index, token, state) -> None:
        reasoning, content, _ = self.splitter.update(state)
        if reasoning:
            out.print(reasoning, style="dim", end="")
        if state.thinking_end is not None and not self.answering:
            self.answering = True
            out.print()
        if content:
            out.print(content, end="")


def _print_completion(c, number: int | None) -> None:
    if number is not None:
        out.rule(f"question {number}")
    out.print(c.thinking, style="dim")
    out.print(c.answer)


def _summary_line(c) -> str:
    bits = [f"{c.thinking_tokens} thinking tokens", f"{c.answer_tokens} answer tokens"]
    if c.extensions_used:
        bits.append(f"{c.extensions_used} extensions")
    if c.capped:
        bits.append("capped")
    return "[" + ", ".join(bits) + f", finish: {c.finish_reason}]"


@app.command()
def generate(
    question: Annotated[str | None, typer.Argument(help="The question; or use --input.")] = None,
    model: Annotated[
        str, typer.Option(help="smollm2 (embedded), a model directory, a .gguf file or a hub id.")
    ] = "smollm2",
    format: Annotated[str, typer.Option("--format", help="Thinking format: s1 or r1.")] = "s1",
    engine: Annotated[
        str, typer.Option(help="hf (in-flight forcing), llamacpp (GGUF, CPU), reprefill (s1's loop) or remote.")
    ] = "hf",
    base_url: Annotated[
        list[str] | None, typer.Option(help="OpenAI-compatible server(s) for --engine remote; repeat for several.")
    ] = None,
    remote_mode: Annotated[RemoteMode, typer.Option(help=REMOTE_MODE_HELP)] = "auto",
    max_thinking_tokens: Annotated[int | None, typer.Option(help="Cap on thinking tokens.")] = None,
    min_thinking_tokens: Annotated[
        int, typer.Option(help="Replace every end of thinking before this many tokens.")
    ] = 0,
    num_ignore: Annotated[int, typer.Option(help="Ignore the first K ends of thinking (s1's Wait count).")] = 0,
    extension: Annotated[
        list[str] | None, typer.Option(help="Text appended instead of an ignored end; repeat to rotate.")
    ] = None,
    answer_prefix: Annotated[str, typer.Option(help="Written after a forced end of thinking.")] = "Final Answer:",
    max_answer_tokens: Annotated[int, typer.Option(help="Tokens allowed after thinking.")] = 1024,
    temperature: Annotated[float, typer.Option(help="0 is greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.")] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences decoded together.")] = 8,
    input: Annotated[Path | None, typer.Option("--input", help="JSONL file of questions.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per question.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="auto (float32 on CPU, bf16 on GPU), float32, bfloat16, float16.")
    ] = "auto",
) -> None:
    """Generate with budget forcing: cap thinking, or extend it with "Wait"."""
    from s1.core.forcing import BudgetForcing
    from s1.core.formats import get_format
    from s1.core.sampling import Sampling
    from s1.engines import load_engine, make_request

    if question is not None and input is not None:
        raise UserError("Give either a question or --input, not both.")
    questions = read_questions(input) if input is not None else [question] if question is not None else None
    if questions is None:
        raise UserError('No question given; pass one, as in s1 generate "What is 7*8?", or --input FILE.jsonl.')
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}.")
    if any(not q.strip() for q in questions):
        raise UserError("The question is empty; pass the text of a question.")
    forcing = BudgetForcing(
        max_thinking_tokens=max_thinking_tokens,
        min_thinking_tokens=min_thinking_tokens,
        num_ignore=num_ignore,
        extensions=tuple(extension) if extension else ("Wait",),
        answer_prefix=answer_prefix,
        max_answer_tokens=max_answer_tokens,
    )
    sampling = Sampling(temperature=temperature, top_p=top_p, seed=seed)
    get_format(format)
    eng = load_engine(
        model,
        engine,
        format,
        device=device,
        dtype=dtype,
        base_urls=base_url,
        remote_mode=remote_mode,
        parallel=batch_size,
    )
    requests = [
        make_request(eng.tokenizer, eng.format_tokens, eng.context_length, q, forcing, sampling, system)
        for q in questions
    ]
    stream = not as_json and len(requests) == 1
    on_token = _Streamer(eng.tokenizer, eng.format_tokens) if stream else None
    completions = eng.generate(requests, batch_size=batch_size, on_token=on_token)
    for number, c in enumerate(completions, 1):
        if as_json:
            print(json.dumps(c.to_dict(), ensure_ascii=False), flush=True)
            continue
        if stream:
            out.print()
        else:
            _print_completion(c, number)
        err.print(_summary_line(c), style="cyan")


def _int_list(text: str, option: str, allow_none: bool = False) -> list:
    """'512,1024' -> [512, 1024]; 'none' stands for no cap where allowed."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if allow_none and part.lower() in {"none", "off"}:
            values.append(None)
            continue
        try:
            values.append(int(part))
        except ValueError:
            raise UserError(
                f"{option} takes whole numbers separated by commas (e.g. 512,1024), got {text!r}."
            ) from None
    return values


def _unescape(text: str | None) -> str | None:
    """'\\n\\n' typed in a shell -> a blank line; other text as given."""
    if text is None:
        return None
    return text.replace("\\n", "\n").replace("\\t", "\t")


def _names(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


@app.command("eval")
def eval_command(
    benchmark: Annotated[
        str,
        typer.Option(
            help="aime24, aime25, math500, gpqa, gpqa_simple_evals, amc23, gsm8k, olympiadbench, minerva, or a task file (my_task.yaml); comma-separated for several."
        ),
    ] = "aime24",
    model: Annotated[
        str, typer.Option(help="smollm2 (embedded), a model directory, a .gguf file or a hub id.")
    ] = "smollm2",
    format: Annotated[str, typer.Option("--format", help="Thinking format: s1 or r1.")] = "s1",
    engine: Annotated[str, typer.Option(help="hf (in-flight forcing), llamacpp, reprefill or remote.")] = "hf",
    base_url: Annotated[
        list[str] | None, typer.Option(help="OpenAI-compatible server(s) for --engine remote; repeat for several.")
    ] = None,
    remote_mode: Annotated[RemoteMode, typer.Option(help=REMOTE_MODE_HELP)] = "auto",
    data: Annotated[
        str | None, typer.Option(help="Any JSONL/CSV/JSON file of problems instead of a named benchmark.")
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            envvar="S1_DATA_DIR",
            help="Folder with the benchmarks' data files (aime24_nofigures.jsonl, math500.jsonl, gpqa_diamond.csv ...; else the hub).",
        ),
    ] = None,
    include_path: Annotated[
        str | None, typer.Option(help="Folder of your own task files (*.yaml), added to the shipped benchmarks.")
    ] = None,
    question_field: Annotated[str | None, typer.Option(help="Field of --data holding the question.")] = None,
    answer_field: Annotated[str | None, typer.Option(help="Field of --data holding the answer.")] = None,
    id_field: Annotated[
        str | None,
        typer.Option(help="Field of --data holding a unique id (default: id, unique_id or idx, else the row number)."),
    ] = None,
    answer_kind: Annotated[str | None, typer.Option(help="math, integer or choice (how answers are graded).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N problems.")] = None,
    ids: Annotated[str | None, typer.Option(help="Only these problem ids, comma-separated.")] = None,
    method: Annotated[
        str,
        typer.Option(
            help="Comma-separated: budget_forcing, token_conditional[+bf], step_conditional[+bf], class_conditional[+bf], rejection_sampling."
        ),
    ] = "budget_forcing",
    max_thinking_tokens: Annotated[
        str, typer.Option(help="Caps / token budgets, comma-separated (none = no cap).")
    ] = "none",
    num_ignore: Annotated[str, typer.Option(help="Wait counts, comma-separated.")] = "0",
    min_thinking_tokens: Annotated[int, typer.Option(help="Minimum thinking tokens.")] = 0,
    extension: Annotated[list[str] | None, typer.Option(help="Extension text; repeat to rotate.")] = None,
    answer_prefix: Annotated[str, typer.Option(help="Written after a forced end of thinking.")] = "Final Answer:",
    max_answer_tokens: Annotated[int, typer.Option(help="Tokens allowed after thinking.")] = 1024,
    steps: Annotated[
        str | None, typer.Option(help="Step budgets for step_conditional (default: token budgets / tokens-per-step).")
    ] = None,
    tokens_per_step: Annotated[
        int, typer.Option(help="Tokens per step when a step budget is enforced or checked.")
    ] = 100,
    samples: Annotated[int, typer.Option(help="Samples per problem (parallel scaling: maj@k, pass@k).")] = 1,
    temperature: Annotated[float, typer.Option(help="0 is greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.")] = None,
    max_tries: Annotated[int, typer.Option(help="Rejection sampling: draws per sample before giving up.")] = 16,
    batch_size: Annotated[int, typer.Option(help="Sequences decoded together.")] = 8,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    output: Annotated[str | None, typer.Option(help="Run directory (re-running the same command resumes it).")] = None,
    only_current: Annotated[
        bool,
        typer.Option(
            "--only-current", help="Summarize only this command's settings, not every setting in the run directory."
        ),
    ] = False,
    reward_model: Annotated[
        str | None,
        typer.Option(
            help="best_of_n, weighted_majority, rebase: a reward model directory, an http:// URL of a /pooling server (vLLM, s1 serve --reward-model) or module:function."
        ),
    ] = None,
    reward_kind: Annotated[
        str,
        typer.Option(
            help="How a reward model directory is read: auto (from its architecture), prm (token classification at each step tag), shepherd (good-token probability) or orm."
        ),
    ] = "auto",
    step_tag: Annotated[
        str | None,
        typer.Option(help="Text the reward model reads after each step (default: <extra_0> for prm, ки for shepherd)."),
    ] = None,
    reward_aggregate: Annotated[
        str, typer.Option(help="A trajectory's score from its steps' scores: last, min, mean or prod.")
    ] = "last",
    width: Annotated[str, typer.Option(help="REBASE widths (trajectories kept), comma-separated.")] = "16",
    step_delimiter: Annotated[
        str, typer.Option(help="REBASE: a step ends at this text (escapes such as \\n allowed).")
    ] = "\\n\\n",
    max_step_tokens: Annotated[int, typer.Option(help="REBASE: a step ends after this many tokens at most.")] = 256,
    max_depth: Annotated[int, typer.Option(help="REBASE: steps before live nodes run to their end.")] = 32,
    rebase_temperature: Annotated[
        float, typer.Option(help="REBASE: softmax temperature over node scores when splitting the width.")
    ] = 0.2,
    rebase_vote: Annotated[str, typer.Option(help="REBASE's answer: weighted (by reward) or majority.")] = "weighted",
    plot_tokens: Annotated[
        str,
        typer.Option(
            help="Plot x-axis: generated tokens, or total tokens processed (prompt, generated, reward model)."
        ),
    ] = "generated",
) -> None:
    """Measure accuracy against thinking: sweep budgets and methods, grade, summarize, plot."""
    from s1.evaluate.config import EvalConfig
    from s1.evaluate.runner import run_eval
    from s1.report.run_report import write_run_report

    config = EvalConfig(
        benchmarks=_names(benchmark),
        model=model,
        engine=engine,
        format=format,
        methods=_names(method),
        max_thinking_tokens=_int_list(max_thinking_tokens, "--max-thinking-tokens", allow_none=True),
        num_ignore=_int_list(num_ignore, "--num-ignore"),
        min_thinking_tokens=min_thinking_tokens,
        extensions=list(extension) if extension else ["Wait"],
        answer_prefix=answer_prefix,
        max_answer_tokens=max_answer_tokens,
        steps=_int_list(steps, "--steps") if steps else None,
        tokens_per_step=tokens_per_step,
        samples=samples,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        max_tries=max_tries,
        batch_size=batch_size,
        system=system,
        data=data,
        data_dir=data_dir,
        question_field=question_field,
        answer_field=answer_field,
        id_field=id_field,
        answer_kind=answer_kind,
        limit=limit,
        ids=_names(ids) if ids is not None else None,
        base_urls=list(base_url) if base_url else None,
        include_path=include_path,
        remote_mode=remote_mode,
        only_current=only_current,
        reward_model=reward_model,
        reward_kind=reward_kind,
        step_tag=_unescape(step_tag),
        reward_aggregate=reward_aggregate,
        widths=_int_list(width, "--width"),
        step_delimiter=_unescape(step_delimiter),
        max_step_tokens=max_step_tokens,
        max_depth=max_depth,
        rebase_temperature=rebase_temperature,
        rebase_vote=rebase_vote,
        plot_tokens=plot_tokens,
    )
    if output is None:
        name = Path(data).stem if data else "-".join(Path(b).stem for b in config.benchmarks)
        output = str(Path("runs") / f"{Path(model).name}-{name}")
    summary = run_eval(config, output)
    out.print(write_run_report(output, summary), markup=False)  # summary.md and scaling.png: report/ draws
    err.print(f"Run directory: {output} (samples.jsonl, summary.json, summary.md, scaling.png)", style="cyan")


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories written by s1 eval.")],
    plot: Annotated[Path, typer.Option(help="Where to draw all runs on one plot.")] = Path("report.png"),
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write one self-contained HTML page: plot, tables with confidence intervals, a sample browser.",
        ),
    ] = None,
    title: Annotated[str | None, typer.Option(help="The HTML page's title.")] = None,
) -> None:
    """Print several runs' tables side by side and draw them on one plot (and, with --html, a page to share)."""
    from s1.report.compare import compare

    out.print(compare([str(r) for r in runs], plot), markup=False)
    err.print(f"Plot: {plot}", style="cyan")
    if html is not None:
        from s1.report.html import write_html

        err.print(f"HTML: {write_html([str(r) for r in runs], html, title)}", style="cyan")


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where the demo writes everything; a second run resumes it.")
    ] = Path("runs/demo"),
    quick: Annotated[
        bool, typer.Option(help="A smaller pool and a few training steps: the mechanics in about a minute.")
    ] = False,
) -> None:
    """The whole s1 loop offline on a CPU: make a toy pool, curate it, train a tiny model, evaluate test-time scaling."""
    from s1.demo import demo as run_demo
    from s1.report.markdown import summary_markdown

    result = run_demo(out_dir, quick=quick, say=lambda line: err.print(line, style="bold cyan", markup=False))
    for summary, run in zip(result["summaries"], result["runs"]):
        out.print(summary_markdown(summary, title=run.name, notes=False), markup=False)
    took = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in result["times"].items())
    err.print(f"Done in {sum(result['times'].values()):.0f} s ({took}).", style="cyan")
    err.print(
        f"Report: {result['html']} (open it in a browser); all curves on one plot: {result['html'].parent / 'scaling.png'}",
        style="cyan",
    )


@app.command("train")
def train_command(
    config: Annotated[
        str | None,
        typer.Option("--config", help="A YAML recipe: s1's keys and any TRL SFTConfig field (configs/recipes/)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE for any recipe key or SFTConfig field, e.g. --set lr_scheduler_type=linear (repeatable; wins over the rest).",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Base model: smollm2 (embedded), a model directory, a .gguf file or a hub id.")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="s1K / s1K-1.1 / question-thinking-answer records: JSONL, JSON, Parquet or a hub id."),
    ] = None,
    output: Annotated[
        str | None, typer.Option(help="Checkpoints go here; the final model in OUTPUT/final (default runs/train).")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="Thinking format of the training template: s1 or r1.")
    ] = None,
    trace_source: Annotated[str | None, typer.Option(help="s1K-1.1 traces: deepseek or gemini.")] = None,
    dtype: Annotated[
        str | None, typer.Option(help="auto (bf16 on GPUs that have it, else float32), float32, bfloat16, float16.")
    ] = None,
    epochs: Annotated[float | None, typer.Option(help="num_train_epochs (paper: 5).")] = None,
    lr: Annotated[float | None, typer.Option(help="learning_rate, the peak (paper: 1e-5).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Global batch (paper: 16) = micro batch x accumulation x processes.")
    ] = None,
    micro_batch_size: Annotated[int | None, typer.Option(help="per_device_train_batch_size (default 1).")] = None,
    block_size: Annotated[
        int | None, typer.Option(help="max_length, the longest sequence in tokens (paper: 32768).")
    ] = None,
    long_sequences: Annotated[
        str | None, typer.Option(help="Longer sequences are truncated (counted, warned) or dropped.")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many optimizer steps (-1: run all epochs).")
    ] = None,
    warmup_ratio: Annotated[float | None, typer.Option(help="Linear warm-up share of all steps (paper: 0.05).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay (paper: 1e-4).")] = None,
    adam_beta1: Annotated[float | None, typer.Option(help="AdamW beta1 (paper: 0.9).")] = None,
    adam_beta2: Annotated[float | None, typer.Option(help="AdamW beta2 (paper: 0.95).")] = None,
    gradient_checkpointing: Annotated[
        bool | None,
        typer.Option(
            "--gradient-checkpointing/--no-gradient-checkpointing",
            help="Trade compute for memory (under FSDP: FSDP's own).",
        ),
    ] = None,
    bf16: Annotated[
        bool | None, typer.Option("--bf16/--no-bf16", help="bf16 autocast; default: where the GPU has it.")
    ] = None,
    save_steps: Annotated[
        int | None,
        typer.Option(help="A resumable checkpoint every N steps (default: each epoch, or a fifth of a shorter run)."),
    ] = None,
    save_total_limit: Annotated[int | None, typer.Option(help="Checkpoints kept, the newest (default 2).")] = None,
    logging_steps: Annotated[int | None, typer.Option(help="Log loss, lr and tokens/s every N steps.")] = None,
    report_to: Annotated[str | None, typer.Option(help="none, wandb or tensorboard (passed to transformers).")] = None,
    resume: Annotated[
        bool | None, typer.Option("--resume", help="Resume from the newest complete checkpoint in --output.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt for every example.")] = None,
) -> None:
    """Supervised fine-tuning on reasoning traces with the paper's recipe (TRL; multi-GPU via accelerate launch)."""
    from s1.train import recipe, sharding
    from s1.train.trainer import train

    flags = {k: v for k, v in locals().items() if k not in ("config", "set_", "recipe", "sharding", "train")}
    final = train(recipe.build(config, flags, set_))
    if sharding.rank() == 0:
        err.print(
            f'Model saved to {final}; try: s1 generate --model {final} "What is 7*8?" --max-thinking-tokens 64',
            style="cyan",
        )


@app.command()
def serve(
    model: Annotated[
        str,
        typer.Option(
            help="smollm2 (embedded), a model directory, a .gguf file or a hub id (with --upstream: its tokenizer)."
        ),
    ] = "smollm2",
    engine: Annotated[str, typer.Option(help="hf (continuous batching), llamacpp (GGUF on CPU) or remote.")] = "hf",
    format: Annotated[str, typer.Option("--format", help="Thinking format: s1 or r1.")] = "s1",
    upstream: Annotated[
        list[str] | None,
        typer.Option(help="OpenAI-compatible server(s) to put budget forcing in front of; repeat for several."),
    ] = None,
    upstream_model: Annotated[
        str | None, typer.Option(help="Model name the upstream server expects (default: its first).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            "--parallel",
            "-np",
            help="Sequences decoded together (hf, llamacpp: llama-server's --parallel); requests in flight (remote).",
        ),
    ] = 16,
    ctx_size: Annotated[
        int | None,
        typer.Option(
            "--ctx-size",
            "-c",
            help="llamacpp: KV cells of all sequences together, split evenly among them (llama-server's --ctx-size; default 8192 per sequence).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            "-t",
            help="CPU threads for decoding (default: llamacpp the cores other processes leave free; hf chosen by measuring its own steps).",
        ),
    ] = None,
    served_model_name: Annotated[
        str | None, typer.Option(help="Name clients use in 'model' (default: --model).")
    ] = None,
    max_answer_tokens: Annotated[
        int,
        typer.Option(help="Default answer budget (tokens after thinking) for requests that set no max_answer_tokens."),
    ] = 1024,
    max_thinking_tokens: Annotated[
        int | None, typer.Option(help="Default thinking cap for requests that set none (0: no thinking).")
    ] = None,
    num_ignore: Annotated[
        int, typer.Option(help="Default number of ignored ends of thinking for requests that set none.")
    ] = 0,
    extension: Annotated[
        list[str] | None, typer.Option(help="Default extension(s) for requests that set none; repeat to rotate.")
    ] = None,
    answer_prefix: Annotated[
        str, typer.Option(help="Default text written after a forced end of thinking.")
    ] = "Final Answer:",
    reasoning_effort_caps: Annotated[
        str, typer.Option(help="Thinking caps that reasoning_effort low/medium/high map to.")
    ] = "low=512,medium=2048,high=8192",
    temperature: Annotated[float, typer.Option(help="Default temperature when a request sets none.")] = 0.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    reward_model: Annotated[
        str | None,
        typer.Option(
            help="Also serve this reward model (a directory or module:function) at /pooling, vLLM's Pooling API, for search on other machines."
        ),
    ] = None,
    reward_kind: Annotated[str, typer.Option(help="How --reward-model is read: auto, prm, shepherd or orm.")] = "auto",
    step_tag: Annotated[
        str | None,
        typer.Option(help="Text the reward model reads after each step (default: <extra_0> for prm, ки for shepherd)."),
    ] = None,
) -> None:
    """Serve the OpenAI API (as vLLM does) with budget-forcing fields in each request."""
    import logging

    import uvicorn

    from s1.core.forcing import BudgetForcing
    from s1.serve.protocol import Defaults
    from s1.serve.service import build_service

    if not 0 < port < 65536:
        raise UserError(f"--port must be from 1 to 65535, got {port}.")
    caps = _effort_caps(reasoning_effort_caps)
    # Validated here, before the model loads, by the one class that checks forcing settings.
    checked = BudgetForcing(
        max_thinking_tokens=max_thinking_tokens,
        num_ignore=num_ignore,
        extensions=tuple(extension or ("Wait",)),
        answer_prefix=answer_prefix,
        max_answer_tokens=max_answer_tokens,
    )
    from s1.core.sampling import Sampling

    Sampling(temperature=temperature)
    if upstream:
        engine = "remote"
    defaults = Defaults(
        max_answer_tokens=max_answer_tokens,
        temperature=temperature,
        answer_prefix=answer_prefix,
        max_thinking_tokens=max_thinking_tokens,
        num_ignore=num_ignore,
        extensions=checked.extensions,
        reasoning_effort_caps=caps,
    )
    app_ = build_service(
        model,
        engine,
        format,
        upstream or [],
        upstream_model,
        batch_size,
        served_model_name,
        defaults,
        device,
        ctx_size=ctx_size,
        threads=threads,
        reward_model=reward_model,
        reward_kind=reward_kind,
        step_tag=_unescape(step_tag),
    )
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", level=logging.WARNING)
    logging.getLogger("s1.serve").setLevel(logging.INFO)
    err.print(
        f"s1 serve: {served_model_name or model} ({engine}) on http://{host}:{port}/v1"
        + (f", reward model {reward_model} at /pooling" if reward_model else ""),
        style="cyan",
    )
    # Open streams must not hold a SIGTERM up: give them a few seconds, then close them.
    uvicorn.run(app_, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)


curate_app = typer.Typer(
    no_args_is_help=True, help="Curate a small, hard, diverse reasoning set (s1K) from a raw pool."
)
app.add_typer(curate_app, name="curate")

ConfigArg = Annotated[Path, typer.Argument(help="The curation config (YAML); see configs/curate/embedded.yaml.")]
OutputOpt = Annotated[
    str | None, typer.Option(help="Run directory (default: the config's output); re-running resumes it.")
]


def _curate(config_path: Path, output: str | None, stages: list[str] | None) -> None:
    from s1.curate import load_config, run

    config = load_config(config_path, output)
    run(config, stages, say=lambda line: err.print(line, style="cyan", markup=False))
    out_dir = Path(config.output)
    if stages is None or "export" in stages:
        out.print((out_dir / "report.md").read_text(), markup=False)
    err.print(
        f"Run directory: {out_dir} (curate.sqlite, s1k.jsonl, report.json, report.md, trace_lengths.png)", style="cyan"
    )


@curate_app.command("run")
def curate_run(config: ConfigArg, output: OutputOpt = None) -> None:
    """Run every stage in order: collect, decontaminate, traces, quality, difficulty, diversity, select, export."""
    _curate(config, output, None)


def _stage_command(stage: str, help_text: str) -> None:
    def command(config: ConfigArg, output: OutputOpt = None) -> None:
        _curate(config, output, [stage])

    command.__doc__ = help_text
    curate_app.command(stage)(command)


for _stage, _help in (
    ("collect", "Read every source into one schema; drop exact duplicate questions."),
    ("decontaminate", "Drop questions sharing a word 8-gram with an evaluation set or an earlier source."),
    ("traces", "The teacher writes a thinking trace and an attempt per question."),
    ("quality", "Drop questions by the paper's rules and rows missing a trace, attempt or reference."),
    ("difficulty", "Drop questions a solver model gets right; count trace lengths in the student's tokenizer."),
    ("diversity", "Put each question in one domain (MSC codes) with the classifier model."),
    ("select", "Choose N questions: Algorithm 1 (or random, longest, diverse)."),
    ("export", "Write s1k.jsonl in s1K's format and the report."),
):
    _stage_command(_stage, _help)


@curate_app.command("status")
def curate_status(directory: Annotated[Path, typer.Argument(help="A run directory of s1 curate.")]) -> None:
    """Print the counts of a curation run (safe while it runs)."""
    from s1.curate import status

    out.print(status(directory), markup=False)


def _effort_caps(text: str) -> dict[str, int]:
    caps = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in ("minimal", "low", "medium", "high", "xhigh") or not value.strip().isdigit():
            raise UserError(
                f"--reasoning-effort-caps takes name=tokens pairs for minimal, low, medium, high or xhigh, such as "
                f"'low=512,medium=2048,high=8192'; got {part!r}."
            )
        caps[name] = int(value)
    return caps


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _error(message: str) -> None:
    """The one line a failed command prints; user text is escaped, so `[/]` in a value cannot break it."""
    err.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)


def _click_failure(exc: BaseException) -> int | None:
    """Exit code for click's (or typer's bundled copy of click's) exceptions, after printing one line.

    Matched by behaviour rather than class, because typer may raise its own copies of click's classes."""
    kind = type(exc).__name__
    if kind == "Abort":
        err.print("Interrupted.")
        return 130
    if kind == "NoArgsIsHelpError" or (kind == "UsageError" and "Missing command" in str(exc)):
        # typer has printed the help already
        _error('No command given; run one of the commands above, e.g. s1 generate "What is 7*8?".')
        return 2
    if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
        message = " ".join(exc.format_message().split()).rstrip(".") + "."
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "s1"
        hint = f" Run '{command} --help' for the options." if exc.exit_code == 2 else ""
        _error(message + hint)
        return exc.exit_code
    if hasattr(exc, "exit_code"):  # click.exceptions.Exit / typer.Exit
        return exc.exit_code
    return None


def main() -> None:
    _quiet_libraries()
    signals.install()
    if hasattr(signal, "SIGXFSZ"):  # past `ulimit -f` a write fails (and is said in one sentence) instead of killing
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        result = app(standalone_mode=False)
        code = result if isinstance(result, int) else 0
        if code == 130:  # typer turns Ctrl-C into a silent exit code 130
            err.print("Interrupted.")
    except UserError as exc:
        _error(str(exc))
        code = 1
    except KeyboardInterrupt:
        err.print("Interrupted.")
        code = 130
    except Terminated:
        err.print("Terminated.")
        code = 143
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:
        code = _click_failure(exc)
        if code is None:
            raise
    if signals.received() is not None and code not in (130, 143):  # its exception was swallowed on the way
        interrupted = signals.received() == signal.SIGINT
        err.print("Interrupted." if interrupted else "Terminated.")
        code = 130 if interrupted else 143
    sys.exit(code)
