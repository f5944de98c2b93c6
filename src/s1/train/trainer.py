"""SFT with TRL on s1K-style reasoning traces: the paper's recipe, loss on the assistant part, a loadable model.

A run reads its recipe (recipe.py), renders the records (data.py), forms the process group
before loading the model (so under FSDP only rank 0 reads the weights), trains with TRL's `SFTTrainer`
saving resumable checkpoints sized to the run, and ends with `OUTPUT/final`: the consolidated weights
in safetensors, config, tokenizer, a chat template whose generation prompt opens thinking, and a
generation config that stops at the end token the examples were trained to emit. Multi-GPU runs go
through `accelerate launch` with configs/accelerate (FSDP2, DeepSpeed ZeRO-3); sharding.py holds what
s1 adds to them.

One concern, so one module past 400 lines: one SFT run from recipe to the consolidated model.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from s1.core.errors import UserError, first_line
from s1.core.files import is_write_error, replacing_directory, write_atomic, write_failure
from s1.core.formats import FormatTokens, ThinkingFormat, encode, get_format
from s1.core.rundir import check_kind, claim_directory, make_directory, unlock_directory
from s1.train import sharding
from s1.train.data import load_records, render_example, thinking_chat_template, turn_end
from s1.train.recipe import PAPER, TrainConfig

RECORD = "s1_train.json"


def accumulation_steps(config: TrainConfig) -> int:
    """Gradient accumulation that makes the global batch from micro batches on every process."""
    per_step = config.value("per_device_train_batch_size") * sharding.world_size()
    if config.batch_size % per_step:
        raise UserError(
            f"--batch-size {config.batch_size} is not a multiple of micro batch "
            f"{config.value('per_device_train_batch_size')} x "
            f"{sharding.world_size()} processes; choose a global batch that divides evenly."
        )
    return config.batch_size // per_step


def plan_steps(examples: int, config: TrainConfig, accumulation: int) -> tuple[int, int]:
    """(optimizer steps in the run, default checkpoint interval): one epoch, or a fifth of a shorter run."""
    batches = math.ceil(examples / (config.value("per_device_train_batch_size") * sharding.world_size()))
    per_epoch = max(1, math.ceil(batches / accumulation))
    max_steps = config.value("max_steps")
    total = max_steps if max_steps > 0 else math.ceil(config.value("num_train_epochs") * per_epoch)
    return total, max(1, min(per_epoch, math.ceil(total / 5)))


def newest_checkpoint(output: Path) -> Path | None:
    """The newest complete checkpoint: the Trainer writes trainer_state.json last, so one without it died mid-save."""
    complete = [
        p
        for p in output.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()
    ]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


def training_dtype(config: TrainConfig):
    import torch

    from s1.core.models import pick_dtype

    return pick_dtype(config.dtype, "cuda" if torch.cuda.is_available() else "cpu")


def train(config: TrainConfig) -> Path:
    """Fine-tune and save to config.output; returns the final model directory.

    The output directory is a train run directory (core/rundir.py): rank 0 of a launch holds its lock for
    the whole run, so a second launch on it is refused while the ranks of this one share it."""
    output = Path(config.output)
    check_kind(output, "train")
    lock = claim_directory(output, "train") if sharding.rank() == 0 else None
    try:
        make_directory(output, what="training")
        return _train(config, output)
    finally:
        unlock_directory(lock)


def _train(config: TrainConfig, output: Path) -> Path:
    import datasets
    import torch

    from s1.core.models import load_tokenizer

    accumulation = accumulation_steps(config)
    if config.use_peft and sharding.world_size() > 1:
        raise UserError("use_peft (--use-peft) trains on one process here; run it without accelerate launch.")
    fmt = get_format(config.format)
    records = load_records(config.data)
    tokenizer, _ = load_tokenizer(config.model)
    FormatTokens.build(
        tokenizer, fmt
    )  # a format whose delimiters this tokenizer splits could not be budget-forced later
    end = turn_end(tokenizer, fmt)
    examples = fit_block(
        [render_example(r, i, tokenizer, fmt, config.trace_source, config.system) for i, r in enumerate(records)],
        tokenizer,
        config,
    )
    total, save_every = plan_steps(len(examples), config, accumulation)
    checkpoint = newest_checkpoint(output)  # stays None unless resuming: a run never starts over an earlier one's
    if checkpoint is None and (output / "final" / RECORD).exists():  # finished, its checkpoints deleted
        if not config.resume:
            raise UserError(
                f"{output} already holds a finished training run ({output / 'final'}); choose another --output "
                "(training again there would replace its model)."
            )
        if sharding.rank() == 0:
            print(
                f"Training in {output} already finished and its checkpoints are gone, so there is nothing to resume "
                f"and {output / 'final'} is left as it is; to train further, start a new run from it "
                f"(--model {output / 'final'})."
            )
        return output / "final"
    if checkpoint is not None and not config.resume:
        raise UserError(
            f"{output} already holds checkpoints of an earlier run; pass --resume to continue it or choose another "
            "--output."
        )
    if checkpoint is None and config.resume:
        raise UserError(f"--resume was given but {output} holds no complete checkpoint-* directory to resume from.")
    done = checkpoint_step(checkpoint) if checkpoint is not None else 0
    if done >= total and (output / "final" / RECORD).exists():
        if sharding.rank() == 0:
            print(
                f"Training in {output} already finished ({done} of {total} steps), so there is nothing to resume and "
                f"{output / 'final'} is left as it is; raise --max-steps or --epochs to train further."
            )
        return output / "final"
    if len(examples) < config.batch_size and sharding.rank() == 0:
        print(
            f"Note: {len(examples)} examples are fewer than the global batch {config.batch_size}, "
            "so every step sees all of them."
        )
    args = sft_args(config, output, accumulation, save_every, end)  # forms the process group
    dtype = training_dtype(config)
    mixed = args.mixed_precision != "no"  # the flags or the launch config's mixed_precision
    model, loaded = load_model(config.model, dtype, mixed)
    if not mixed and dtype != torch.float32 and sharding.rank() == 0:
        print(
            f"Note: the weights are trained in {_name(dtype)} without fp32 master weights "
            "(no mixed precision here), so "
            "AdamW steps smaller than about 1/256 of a weight are lost; --dtype float32 keeps them."
        )
    callbacks = _callbacks()
    try:
        trainer = _trainer_class()(
            model=model,
            args=args,
            train_dataset=datasets.Dataset.from_list(examples),
            processing_class=tokenizer,
            callbacks=list(callbacks),
            peft_config=lora_config(config),
        )
    except (ValueError, TypeError, ImportError) as exc:
        raise UserError(f"The training recipe cannot run: {first_line(exc, 300)}") from None
    note_recipe(output, config, args, resuming=checkpoint is not None)
    if sharding.rank() == 0:
        every = "step" if args.save_steps == 1 else f"{args.save_steps:g} steps"
        saving = (
            f"a checkpoint every {every}"
            if args.save_strategy == "steps"
            else f"checkpoints: {getattr(args.save_strategy, 'value', args.save_strategy)}"
        )
        print(
            f"Training {total} steps ({len(examples)} examples, global batch {config.batch_size}, "
            f"{sharding.kind()}), {saving}" + (f", resuming from {checkpoint.name}" if checkpoint else "") + "."
        )
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except ImportError as exc:  # an option whose package is missing (liger kernels, a logger, ...)
        raise UserError(
            f"The training recipe needs a package that is not installed: {' '.join(str(exc).split())[:300]}"
        ) from None
    except Exception as exc:  # a checkpoint the disk refused (torch, safetensors); complete ones stay resumable
        if is_write_error(exc):
            raise write_failure(output, exc) from None
        raise
    final = save_final(trainer, tokenizer, fmt, config, output / "final", dtype, end)
    write_rank_record(output, trainer, result, loaded, callbacks[1].first, callbacks[2].chosen)
    return final


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a complete checkpoint was saved at."""
    try:
        return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return int(checkpoint.name.split("-")[-1])


def load_model(name: str, dtype, mixed: bool):
    """(model, how its weights arrived): read from disk, or on FSDP's other ranks only allocated, to be filled
    with the shards rank 0 broadcasts. Under mixed precision the trained (master) weights are fp32."""
    from s1.core.models import empty_model, load_hf

    if sharding.lean_loading() and sharding.rank() != 0:
        # fp32 where FSDP will upcast to fp32 anyway: the upcast would otherwise touch every page
        return empty_model(name, "float32" if mixed else _name(dtype)), "broadcast from rank 0"
    model = load_hf(name, device="cpu", dtype=_name(dtype), place=False)[0]
    if mixed and sharding.kind() in ("single", "ddp"):
        model.float()  # AdamW steps of lr 1e-5 round away on bf16 weights (FSDP2 and ZeRO-3 upcast by themselves)
    return model, "read from disk"


def note_recipe(output: Path, config: TrainConfig, args, resuming: bool) -> None:
    """OUTPUT/recipe.json: every training argument of the run, written once the Trainer accepted them. A resume
    with other values says which (its loss curve will differ from an uninterrupted run's). Rank 0 only."""
    if sharding.rank() != 0:
        return
    current = json.loads(
        json.dumps(
            {
                **args.to_dict(),
                "batch_size": config.batch_size,
                "model": config.model,
                "data": config.data,
                "format": config.format,
                "dtype": config.dtype,
            },
            default=str,
        )
    )
    ignored = {"max_steps", "output_dir", "logging_dir", "run_name", "resume_from_checkpoint"}
    path = output / "recipe.json"
    if resuming and path.exists():
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = {}
        changed = [
            f"{k} {before.get(k)!r} -> {current.get(k)!r}"
            for k in sorted((set(before) | set(current)) - ignored)
            if before.get(k) != current.get(k)
        ]
        if changed:
            print(
                "Note: resuming with changed settings (" + "; ".join(changed) + "); the loss curve will differ from an "
                "uninterrupted run's."
            )
    write_atomic(path, json.dumps(current, indent=2) + "\n")


def fit_block(examples: list[dict], tokenizer, config: TrainConfig) -> list[dict]:
    """Examples longer than the block are counted and truncated by TRL, or dropped here."""
    block = config.value("max_length")
    prompt_lengths = [len(encode(tokenizer, e["prompt"])) for e in examples]
    if all(n >= block for n in prompt_lengths):
        raise UserError(
            f"Every prompt is at least --block-size {block} tokens long, so no answer token "
            f"would be trained on; raise --block-size above {max(prompt_lengths)}."
        )
    long = {i for i, e in enumerate(examples) if len(encode(tokenizer, e["prompt"] + e["completion"])) > block}
    if long:
        action = "dropped" if config.long_sequences == "drop" else "truncated to the block size"
        if sharding.rank() == 0:
            print(
                f"{len(long)} of {len(examples)} examples are longer than --block-size {block} tokens and are {action}."
            )
        if config.long_sequences == "drop":
            examples = [e for i, e in enumerate(examples) if i not in long]
            if not examples:
                raise UserError("Every example is longer than --block-size; raise it or use --long-sequences truncate.")
    return examples


def sft_args(config: TrainConfig, output: Path, accumulation: int, save_every: int, end: str):
    """TRL's SFTConfig: the paper's recipe, the run's own values over it, and what s1 derives itself."""
    import torch
    from trl import SFTConfig

    values = {**PAPER, **config.sft}
    cuda = torch.cuda.is_available()
    values["activation_checkpointing"] = sharding.trainer_checkpointing(bool(values.get("activation_checkpointing")))
    if values.get("save_steps") is None:
        values["save_steps"] = save_every
    values.setdefault("bf16", cuda and torch.cuda.is_bf16_supported())
    if values.get("report_to") in (None, "none", ["none"]):
        values["report_to"] = []
    values.update(
        output_dir=str(output),
        gradient_accumulation_steps=accumulation,
        eos_token=end,
        include_num_input_tokens_seen=values.get("include_num_input_tokens_seen", True),
        disable_tqdm=values.get(
            "disable_tqdm", False
        ),  # the CLI quiets transformers' logging, which would hide the bar
        use_cpu=not cuda,  # without it, processes on a machine with no GPU would not form a (gloo) group
    )
    if sharding.world_size() > 1 and not cuda:
        values.setdefault("ddp_backend", "gloo")
    try:
        return SFTConfig(**values)
    except (ValueError, TypeError) as exc:
        raise UserError(f"The training recipe is not valid: {first_line(exc, 300)}") from None


def lora_config(config: TrainConfig):
    """PEFT's LoraConfig from TRL's ModelConfig names (use_peft, lora_r, lora_alpha, lora_dropout,
    lora_target_modules), or None for full fine-tuning; TRL's SFTTrainer wraps the model with it."""
    if not config.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules or "all-linear",
        task_type="CAUSAL_LM",
    )


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _trainer_class():
    from trl import SFTTrainer

    class Trainer(SFTTrainer):
        """TRL's SFTTrainer, made FSDP on CPU processes that asked for it (see sharding.py), and never trained
        past its last step: resumed from a checkpoint at that step (killed before `final/` was written),
        transformers would run one more step before checking, and the weights would no longer be the run's."""

        def create_accelerator_and_postprocess(self):
            super().create_accelerator_and_postprocess()
            sharding.enable_fsdp_on_cpu(self)

        def _run_epoch(self, *args, **kwargs):
            if self.state.global_step >= self.state.max_steps:
                self.control.should_training_stop = True
                return None
            return super()._run_epoch(*args, **kwargs)

    return Trainer


def save_final(trainer, tokenizer, fmt: ThinkingFormat, config: TrainConfig, final: Path, dtype, end: str) -> Path:
    """Consolidated weights in `dtype` as safetensors, with config, tokenizer, thinking template and EOS."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if config.use_peft:  # one process (checked before training): the adapter, then the merged weights
        with replacing_directory(final.parent / "adapter") as partial:
            _write_adapter(model, tokenizer, fmt, config, partial)
        model = model.merge_and_unload()
        state = model.state_dict()
    else:
        state = sharding.full_state_dict(trainer)
    if trainer.is_world_process_zero():
        with replacing_directory(final) as partial:
            _write_final(model, tokenizer, fmt, config, partial, dtype, end, state)
    trainer.accelerator.wait_for_everyone()
    return final


def _write_adapter(model, tokenizer, fmt: ThinkingFormat, config: TrainConfig, adapter: Path) -> None:
    """OUTPUT/adapter: PEFT's adapter files, naming the base model's local directory (so transformers and s1 load
    it as a model on its own), with the tokenizer and its thinking template."""
    from s1.core.models import local_dir, resolve

    model.save_pretrained(str(adapter), safe_serialization=True)
    path = adapter / "adapter_config.json"
    written = json.loads(path.read_text())
    source = resolve(config.model)
    written["base_model_name_or_path"] = (
        source.location if source.kind == "hub" else str(Path(local_dir(source)).resolve())
    )
    path.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
    template = thinking_chat_template(tokenizer, fmt)
    if template:
        tokenizer.chat_template = template
    tokenizer.save_pretrained(str(adapter))


def _write_final(model, tokenizer, fmt: ThinkingFormat, config: TrainConfig, final: Path, dtype, end: str, state):
    """Weights, config, tokenizer with the thinking template, and the recipe record (written last: its presence
    marks a complete final model)."""
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.config.architectures = [_original_class(model).__name__]
    model.config.use_cache = True
    end_id = tokenizer.convert_tokens_to_ids(end)
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    model.generation_config.eos_token_id = eos + [end_id] if end_id not in eos else eos
    model.save_pretrained(str(final), state_dict=state, safe_serialization=True)
    _set_config_dtype(final, dtype)
    template = thinking_chat_template(tokenizer, fmt)
    if template:
        tokenizer.chat_template = template
    tokenizer.save_pretrained(str(final))
    (final / RECORD).write_text(
        json.dumps({"config": asdict(config), "format": asdict(fmt), "end_token": end}, indent=2) + "\n"
    )


def _original_class(model):
    """The model's own class: FSDP2 swaps in a subclass named FSDP<Name>, which no loader knows."""
    for cls in type(model).__mro__:
        if not cls.__name__.startswith("FSDP"):
            return cls
    return type(model)


def _set_config_dtype(final: Path, dtype) -> None:
    """config.json names the dtype the weights were saved in, not the one they were trained in."""
    path = final / "config.json"
    config = json.loads(path.read_text())
    config["dtype"] = _name(dtype)
    config.pop("torch_dtype", None)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_rank_record(output: Path, trainer, result, loaded: str, first_step: int, threads: list) -> None:
    """OUTPUT/ranks/rank-N.json: what this process trained, from which step, and how it held the model."""
    ranks = output / "ranks"
    ranks.mkdir(parents=True, exist_ok=True)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    write_atomic(
        ranks / f"rank-{sharding.rank()}.json",
        json.dumps(
            {
                "rank": sharding.rank(),
                "world_size": sharding.world_size(),
                "global_step": trainer.state.global_step,
                "first_step": first_step,
                "train_loss": result.training_loss,
                "losses": losses,
                "weights": loaded,
                **sharding.describe(trainer.model),
                "fingerprint": _fingerprint(trainer.model),
                "train_seconds": result.metrics.get("train_runtime"),
                "tokens_seen": trainer.state.num_input_tokens_seen,
                "peak_memory_bytes": _peak_memory(),
                "threads": threads,
            }
        )
        + "\n",
    )


def _peak_memory() -> int:
    """Peak GPU memory allocated by torch on a GPU, else the process's peak resident memory."""
    import resource

    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _fingerprint(model) -> str:
    """A checksum of this process's weights (its shards under FSDP)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        digest.update(name.encode())
        digest.update(local.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _callbacks() -> tuple:
    """(tokens/s on each log line, the step this process began at: above 0 when it resumed, torch's threads)."""
    from transformers import TrainerCallback

    from s1.engines.threads import RECHECK_SECONDS, BusyMeter, use_free_cores

    class FreeCores(TrainerCallback):
        """torch's CPU threads follow the cores other processes leave free (engines/threads.py): with another
        process busy on one of two cores, two threads trained 15x slower than one. Read again every
        RECHECK_SECONDS; `chosen` lists (step, threads) at each change."""

        def __init__(self):
            self.chosen: list[tuple[int, int]] = []
            self.meter, self.checked = None, 0.0

        def _choose(self, step: int) -> None:
            threads = use_free_cores(self.meter)
            self.meter, self.checked = BusyMeter(), time.monotonic()
            if not self.chosen or self.chosen[-1][1] != threads:
                self.chosen.append((step, threads))

        def on_train_begin(self, args, state, control, **kwargs):
            self._choose(state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() - self.checked >= RECHECK_SECONDS:
                self._choose(state.global_step)

    class TokensPerSecond(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            now = time.perf_counter()
            if logs is not None and "loss" in logs and getattr(self, "last", None) and state.num_input_tokens_seen:
                then, seen = self.last
                logs["tokens_per_second"] = round((state.num_input_tokens_seen - seen) / max(now - then, 1e-9), 1)
            self.last = (now, state.num_input_tokens_seen)

    class FirstStep(TrainerCallback):
        first = 0

        def on_train_begin(self, args, state, control, **kwargs):  # after a resumed checkpoint's state is read
            self.first = state.global_step

    return TokensPerSecond(), FirstStep(), FreeCores()
