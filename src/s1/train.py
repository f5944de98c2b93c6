"""SFT with TRL on s1K-style reasoning traces: the paper's recipe as defaults, loss on the assistant only.

Records are rendered as prompt (the chat template's system + user turns and assistant header) and
completion (the format's training template: thinking, answer delimiter, answer, end of turn), so TRL's
completion-only loss masks exactly the system and user part. Multi-GPU runs go through `accelerate
launch` with the configs in configs/accelerate (FSDP full-shard, DeepSpeed ZeRO-3).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import UserError
from .rundir import make_directory
from .formats import ThinkingFormat, get_format, encode

TRACE_SOURCES = ("deepseek", "gemini")
REPORT_TO = ("none", "wandb", "tensorboard")


@dataclass
class TrainConfig:
    """Defaults are the paper's recipe (s1 §D): 5 epochs, lr 1e-5, global batch 16, 5% warm-up, cosine."""

    model: str = "smollm2"
    data: str = ""
    output: str = "runs/train"
    format: str = "s1"
    trace_source: str = "deepseek"
    epochs: float = 5.0
    lr: float = 1e-5
    batch_size: int = 16
    """Global batch: micro batch x gradient accumulation x processes."""
    micro_batch_size: int = 1
    block_size: int = 32768
    long_sequences: str = "truncate"
    """truncate (counted and warned about) or drop."""
    max_steps: int = -1
    warmup_ratio: float = 0.05
    weight_decay: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    gradient_checkpointing: bool = False
    bf16: bool | None = None
    """None: bf16 where the hardware has it."""
    save_steps: int = 500
    logging_steps: int = 1
    report_to: str = "none"
    resume: bool = False
    seed: int = 42
    system: str | None = None


def _trace_and_attempt(record: dict, index: int, source: str) -> tuple[str, str]:
    """s1K, s1K-1.1 or plain question/thinking/answer records -> (trace, attempt)."""
    if f"{source}_thinking_trajectory" in record:
        trace, attempt = record.get(f"{source}_thinking_trajectory"), record.get(f"{source}_attempt")
        names = (f"{source}_thinking_trajectory", f"{source}_attempt")
    elif "thinking_trajectories" in record:
        trajectories = record["thinking_trajectories"]
        trace = trajectories[0] if isinstance(trajectories, list) and trajectories else trajectories
        attempt = record.get("attempt")
        names = ("thinking_trajectories", "attempt")
    else:
        trace, attempt = record.get("thinking"), record.get("answer", record.get("attempt"))
        names = ("thinking", "answer")
    for name, value in zip(names, (trace, attempt)):
        if not isinstance(value, str) or not value.strip():
            raise UserError(
                f"Record {index + 1} has no {name!r}; give each record question + thinking_trajectories + attempt (s1K), "
                "deepseek_/gemini_thinking_trajectory + _attempt (s1K-1.1), or question + thinking + answer."
            )
    return trace, attempt


def answer_end(tokenizer, fmt: ThinkingFormat) -> str:
    """What closes the assistant turn: the format's answer stop if it is one token, else the tokenizer's EOS."""
    for stop in fmt.answer_stops:
        if len(encode(tokenizer, stop)) == 1:
            return stop
    return tokenizer.eos_token or ""


def render_example(record: dict, index: int, tokenizer, fmt: ThinkingFormat, source: str = "deepseek", system: str | None = None) -> dict:
    """One record as {prompt, completion}; the completion is what the loss is computed on."""
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise UserError(f"Record {index + 1} has no 'question'; every record needs the question text.")
    trace, attempt = _trace_and_attempt(record, index, source)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    start = fmt.think_start if fmt.think_start.endswith("\n") else fmt.think_start + "\n"
    if prompt.endswith(start):  # templates of R1-style models open thinking themselves
        start = ""
    attempt = attempt.strip()
    if fmt.answer_label.strip() and not attempt.startswith(fmt.answer_label.strip()):
        attempt = fmt.answer_label + attempt
    completion = f"{start}{trace.strip()}\n{fmt.think_end}{fmt.answer_separator}{attempt}{answer_end(tokenizer, fmt)}"
    return {"prompt": prompt, "completion": completion}


def load_records(data: str) -> list[dict]:
    """JSONL, JSON or Parquet files, or a hub dataset id (train split)."""
    if not data:
        raise UserError("No training data; pass --data FILE.jsonl|FILE.parquet or a hub dataset id such as simplescaling/s1K-1.1.")
    path = Path(data)
    try:
        import datasets

        if path.exists():
            kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(path.suffix.lower())
            if kind is None:
                raise UserError(f"Cannot read {data}: training data must be .jsonl, .json or .parquet.")
            dataset = datasets.load_dataset(kind, data_files=str(path), split="train")
        elif data.startswith((".", "/", "~")) or path.suffix:
            raise UserError(f"Training data {data} does not exist; check the path.")
        else:
            dataset = datasets.load_dataset(data, split="train")
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"Could not load training data {data!r} ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}).") from None
    records = [dict(r) for r in dataset]
    if not records:
        raise UserError(f"{data} holds no records.")
    return records


def thinking_chat_template(tokenizer, fmt: ThinkingFormat) -> str | None:
    """The tokenizer's chat template, extended so a generation prompt opens thinking in this format."""
    template = tokenizer.chat_template
    if not template:
        return None
    probe = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False)
    if probe.rstrip().endswith(fmt.think_start.rstrip()):
        return template
    return template + "{% if add_generation_prompt %}{{ " + json.dumps(fmt.think_start) + " }}{% endif %}"


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _bf16(config: TrainConfig) -> bool:
    import torch

    if config.bf16 is not None:
        return config.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def validate(config: TrainConfig) -> int:
    """Check the recipe; returns the gradient accumulation steps that make the global batch."""
    if config.epochs <= 0 or config.lr <= 0:
        raise UserError("--epochs and --lr must be positive.")
    if config.micro_batch_size < 1 or config.batch_size < 1 or config.block_size < 16:
        raise UserError("--batch-size and --micro-batch-size must be at least 1 and --block-size at least 16.")
    if config.long_sequences not in ("truncate", "drop"):
        raise UserError(f"--long-sequences must be truncate or drop, got {config.long_sequences!r}.")
    if config.trace_source not in TRACE_SOURCES:
        raise UserError(f"--trace-source must be one of {', '.join(TRACE_SOURCES)}.")
    if not 0 <= config.warmup_ratio < 1:
        raise UserError(f"--warmup-ratio is a share of all steps, from 0 up to (not including) 1; got {config.warmup_ratio}.")
    if config.weight_decay < 0 or not (0 <= config.adam_beta1 < 1 and 0 <= config.adam_beta2 < 1):
        raise UserError("--weight-decay must be at least 0 and --adam-beta1/--adam-beta2 from 0 up to 1.")
    if config.logging_steps < 1 or config.save_steps < 1:
        raise UserError(f"--logging-steps and --save-steps must be at least 1, got {config.logging_steps} and {config.save_steps}.")
    if config.max_steps == 0 or config.max_steps < -1:
        raise UserError(f"--max-steps must be -1 (all epochs) or at least 1, got {config.max_steps}.")
    if not 0 <= config.seed < 2**32:
        raise UserError(f"--seed must be from 0 to 2**32-1, got {config.seed}.")
    if config.report_to not in REPORT_TO:
        raise UserError(f"--report-to must be one of {', '.join(REPORT_TO)}, got {config.report_to!r}.")
    if config.report_to != "none" and importlib.util.find_spec(config.report_to) is None:
        raise UserError(f"--report-to {config.report_to} needs the {config.report_to} package; pip install {config.report_to}.")
    output = make_directory(Path(config.output), what="training")
    if not os.access(output, os.W_OK):
        raise UserError(f"--output {output} is not writable; choose a writable place.")
    per_step = config.micro_batch_size * _world_size()
    if config.batch_size % per_step:
        raise UserError(
            f"--batch-size {config.batch_size} is not a multiple of micro batch {config.micro_batch_size} x "
            f"{_world_size()} processes; choose a global batch that divides evenly."
        )
    return config.batch_size // per_step


def _fingerprint(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def train(config: TrainConfig) -> Path:
    """Fine-tune and save to config.output; returns the final model directory."""
    import datasets
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from .models import load_hf

    accumulation = validate(config)
    fmt = get_format(config.format)
    records = load_records(config.data)
    model, tokenizer = load_hf(config.model, device="cpu", dtype="float32")
    examples = [render_example(r, i, tokenizer, fmt, config.trace_source, config.system) for i, r in enumerate(records)]
    lengths = [len(encode(tokenizer, e["prompt"] + e["completion"])) for e in examples]
    prompt_lengths = [len(encode(tokenizer, e["prompt"])) for e in examples]
    if all(n >= config.block_size for n in prompt_lengths):
        raise UserError(f"Every prompt is at least --block-size {config.block_size} tokens long, so no answer token "
                        f"would be trained on; raise --block-size above {max(prompt_lengths)}.")
    long = [i for i, n in enumerate(lengths) if n > config.block_size]
    rank = int(os.environ.get("RANK", "0"))
    if long:
        action = "dropped" if config.long_sequences == "drop" else "truncated to the block size"
        if rank == 0:
            print(f"{len(long)} of {len(examples)} examples are longer than --block-size {config.block_size} tokens and are {action}.")
        if config.long_sequences == "drop":
            examples = [e for i, e in enumerate(examples) if i not in set(long)]
            if not examples:
                raise UserError("Every example is longer than --block-size; raise it or use --long-sequences truncate.")

    output = Path(config.output)
    checkpoints = sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    if config.resume and not checkpoints:
        raise UserError(f"--resume was given but {output} holds no checkpoint-* directory to resume from.")

    class TokensPerSecond(TrainerCallback):
        """Adds tokens/s to each log line (TRL counts the tokens seen)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            import time

            now = time.perf_counter()
            if logs is not None and getattr(self, "last", None) and state.num_input_tokens_seen:
                then, seen = self.last
                logs["tokens_per_second"] = round((state.num_input_tokens_seen - seen) / max(now - then, 1e-9), 1)
            self.last = (now, state.num_input_tokens_seen)

    args = SFTConfig(
        output_dir=str(output),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.lr,
        per_device_train_batch_size=config.micro_batch_size,
        gradient_accumulation_steps=accumulation,
        warmup_steps=config.warmup_ratio,  # a value below 1 is a fraction of all steps
        lr_scheduler_type="cosine",
        weight_decay=config.weight_decay,
        adam_beta1=config.adam_beta1,
        adam_beta2=config.adam_beta2,
        bf16=_bf16(config),
        activation_checkpointing=config.gradient_checkpointing,
        packing=False,
        max_length=config.block_size,
        completion_only_loss=True,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_strategy="steps",
        report_to=[] if config.report_to == "none" else [config.report_to],
        seed=config.seed,
        include_num_input_tokens_seen=True,
        disable_tqdm=False,  # the CLI quiets transformers' logging, which would also hide the training bar
        dataset_num_proc=None,
        use_cpu=not _cuda(),  # without it, processes on a machine with no GPU would not form a (gloo) group
        ddp_backend="gloo" if _world_size() > 1 and not _cuda() else None,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(examples),
        processing_class=tokenizer,
        callbacks=[TokensPerSecond()],
    )
    result = trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if config.resume else None)
    final = output / "final"
    template = thinking_chat_template(tokenizer, fmt)
    if template:
        tokenizer.chat_template = template
    trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(final))
        (final / "s1_train.json").write_text(json.dumps({"config": asdict(config), "format": asdict(fmt)}, indent=2) + "\n")
    ranks = output / "ranks"
    ranks.mkdir(parents=True, exist_ok=True)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    (ranks / f"rank-{rank}.json").write_text(json.dumps({
        "rank": rank, "world_size": _world_size(), "global_step": trainer.state.global_step,
        "train_loss": result.training_loss, "losses": losses, "fingerprint": _fingerprint(trainer.model),
    }) + "\n")
    return final


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
