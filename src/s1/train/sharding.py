"""FSDP and DeepSpeed as `accelerate launch` sets them up, and the three things s1 adds to them.

- Activation checkpointing where FSDP wants it: under FSDP, `--gradient-checkpointing` turns on FSDP's
  own (it wraps each decoder layer before sharding); the Trainer's top-level switch would cost an extra
  all-gather per layer in the backward pass, and transformers refuses both at once.
- FSDP on processes without GPUs: accelerate only forms an FSDP run on accelerators and otherwise falls
  back to DDP, although torch's FSDP2 works on CPU tensors over gloo. `enable_fsdp_on_cpu` marks the
  run FSDP as accelerate would on GPUs, so the tests run the same FSDP2 path (sharding, lean loading,
  sharded checkpoints, consolidation) on two CPU processes.
- Consolidated final weights: checkpoints stay sharded (fast, and what resuming needs), and at the end
  `full_state_dict` gathers the whole model on rank 0, for FSDP, DeepSpeed ZeRO-3 and plain runs alike.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def kind() -> str:
    """fsdp, deepspeed, ddp (several processes, replicated weights) or single, from what `accelerate launch` set."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "deepspeed"
    return "ddp" if world_size() > 1 else "single"


def trainer_checkpointing(requested: bool) -> bool:
    """Whether the Trainer's own gradient checkpointing is on; under FSDP the request goes to FSDP's instead
    (which the launch config's fsdp_activation_checkpointing may already have turned on)."""
    if kind() != "fsdp":
        return requested
    if requested:
        os.environ["FSDP_ACTIVATION_CHECKPOINTING"] = "true"
    return False


def lean_loading() -> bool:
    """Whether only rank 0 reads the weights (FSDP's cpu_ram_efficient_loading; the others get shards)."""
    return kind() == "fsdp" and os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING", "false").lower() == "true"


def enable_fsdp_on_cpu(trainer) -> None:
    """After the Trainer made its accelerator: on CPU processes that asked for FSDP, make the run FSDP."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if kind() != "fsdp" or torch.cuda.is_available() or world_size() < 2:
        return
    state = trainer.accelerator.state
    if getattr(state, "fsdp_plugin", None) is None:
        state.fsdp_plugin = FullyShardedDataParallelPlugin()  # read from the FSDP_* variables the launcher set
    # both shared states: each later AcceleratorState() copies the process state's type over its own
    PartialState._shared_state["distributed_type"] = state.distributed_type = DistributedType.FSDP
    trainer.is_fsdp_enabled = True


def full_state_dict(trainer) -> dict:
    """The whole model's weights on rank 0 (an empty dict elsewhere); every process must call it."""
    model = trainer.model_wrapped if kind() == "deepspeed" else trainer.model  # ZeRO-3 gathers through its engine
    state = trainer.accelerator.get_state_dict(model)
    return state if trainer.is_world_process_zero() else {}


def describe(model) -> dict:
    """How this process holds the model: sharded or not, and where activation checkpointing happens."""
    names = {type(m).__name__.removeprefix("FSDP") for m in model.modules()}  # FSDP2 renames wrapped classes
    if "CheckpointWrapper" in names:
        checkpointing = "fsdp"
    elif getattr(model, "is_activation_checkpointing", False):
        checkpointing = "trainer"
    else:
        checkpointing = "off"
    sharded = any(type(p).__name__ == "DTensor" for p in model.parameters())
    return {"kind": kind(), "sharded": sharded, "activation_checkpointing": checkpointing}
