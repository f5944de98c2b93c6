"""`s1 train`: supervised fine-tuning with the paper's recipe; every flag is a recipe key (train/recipe.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from s1.cli.common import app, err


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
            help="KEY=VALUE for any recipe key or SFTConfig field, e.g. --set lr_scheduler_type=linear "
            "(repeatable; wins over the rest).",
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
    use_peft: Annotated[
        bool | None,
        typer.Option("--use-peft", help="LoRA through PEFT: saves OUTPUT/adapter and the merged model OUTPUT/final."),
    ] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank (default 16).")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha (default 32).")] = None,
    lora_dropout: Annotated[float | None, typer.Option(help="LoRA dropout (default 0.05).")] = None,
    lora_target_modules: Annotated[
        str | None,
        typer.Option(help="Comma-separated modules the adapter wraps, e.g. q_proj,v_proj (default: all linear)."),
    ] = None,
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
