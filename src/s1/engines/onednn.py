"""Float32 linear layers through oneDNN while the transformers engine steps on a CPU.

torch computes a float32 `nn.Linear` on CPU with MKL's sgemm. At the few rows a decoding step has, and on
CPUs where MKL does not take its fast paths (AMD's), that is most of a step; oneDNN, the library torch
already ships and uses for its CPU bf16 matmuls, does the same layers in about half the time (BENCHMARKS.md,
issue 12's second pass). Both compute in float32; the sums are accumulated in another order, so results
differ from sgemm's in the last bits only (greedy outputs still equal `transformers.generate`'s:
tests/engines/test_equivalence.py).

Prepacked copies (oneDNN's blocked layout, faster again) are a second copy of every weight, so they are
kept only when all the layers' weights take at most PACK_SHARE of the machine's (or container's) memory,
and used only for two rows or more, and only where a probe of the model's own layer shapes found them
giving bit for bit what the plain weights give (at one row oneDNN's plain path rounds differently). So
whether a machine packs changes speed, not results.

The layers are switched over only for the engine's own forwards (`OneDNNLinears.active`): each plain
`nn.Linear` gets an instance `forward` for their length, so the same model object computes with torch's
own linear everywhere else (`generate`, training — though not concurrently with the engine's forwards)
and nothing about it is kept or saved. `torch.backends.mkldnn.enabled = False` or CPU autocast keeps
torch's own linear in the engine too.
"""

from __future__ import annotations

import os
import weakref
from contextlib import contextmanager
from functools import cache, partial
from pathlib import Path

import torch
from torch import nn

PACK_SHARE = 1 / 8
PACK_ROWS = 8
"""The row count oneDNN chooses the packed layout for (decoding batches); it serves other counts too."""


@cache
def available() -> bool:
    """Whether this torch has oneDNN's linear and it computes what `F.linear` does."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        x = torch.arange(48, dtype=torch.float32).reshape(3, 16) / 48
        w = torch.arange(128, dtype=torch.float32).reshape(8, 16).cos()
        b = torch.arange(8, dtype=torch.float32)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, PACK_ROWS)
        reference = nn.functional.linear(x, w, b)
        return all(torch.allclose(_onednn(x, weight, b), reference, rtol=1e-4, atol=1e-5) for weight in (w, packed))
    except Exception:  # an op missing or refused in this build: keep torch's own linear
        return False


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


_SHARED: weakref.WeakKeyDictionary[nn.Module, OneDNNLinears] = weakref.WeakKeyDictionary()


class OneDNNLinears:
    """The model's plain float32 CPU linear layers, switched to oneDNN inside `active()`. Engines get one per
    model (`for_model`), so packed weights outlive a single `generate` call and several engines on one
    model share one packed copy; `prepare()` (each loop's start) packs what is missing or stale outside any
    timed step."""

    @classmethod
    def for_model(cls, model: nn.Module) -> OneDNNLinears:
        shared = _SHARED.get(model)
        if shared is None:
            shared = _SHARED[model] = cls(model)
        return shared

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if _eligible(m)] if available() else []
        weight_bytes = sum(layer.weight.numel() * layer.weight.element_size() for layer in self.layers)
        self.pack = bool(self.layers) and weight_bytes <= PACK_SHARE * memory_bytes() and _packing_is_exact(self.layers)
        self.packed: dict[nn.Linear, tuple[nn.Parameter, torch.Tensor, int, torch.Tensor]] = {}
        """Per layer: the parameter packed, its data then (held: that storage cannot be freed and its address
        reused while the entry stands), its version counter then, and the packed copy. A weight changed in
        place by training, or given new data (`.to()`, `.data = `), is packed again; a change made in place
        through `.data` (PEFT's merge) moves nothing: call `engine.linears.forget()` after one."""

    def forget(self) -> None:
        """Drop the packed copies (the weights were changed in a way `_packed` cannot see)."""
        self.packed.clear()

    def prepare(self) -> None:
        if not self.pack:
            return
        for layer in self.layers:
            if _float32_cpu(layer.weight):
                self._packed(layer)
            else:  # cast or moved since the engine was made: its copy would only hold memory
                self.packed.pop(layer, None)

    @contextmanager
    def active(self):
        switched = []
        try:
            if torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu"):
                for layer in self.layers:
                    if "forward" not in layer.__dict__:  # something else replaced it since: leave it alone
                        layer.forward = partial(self._forward, layer)  # an instance attribute shadows nn.Linear.forward
                        switched.append(layer)
            yield
        finally:
            for layer in switched:
                layer.__dict__.pop("forward", None)

    def _forward(self, layer: nn.Linear, input: torch.Tensor) -> torch.Tensor:
        weight = layer.weight
        if input.dtype != torch.float32 or not _float32_cpu(weight) or input.numel() == 0:
            return nn.functional.linear(input, weight, layer.bias)  # the model was cast or moved since; no rows
        one_row = input.numel() == input.shape[-1]
        return _onednn(input, weight if one_row or not self.pack else self._packed(layer), layer.bias)

    def _packed(self, layer: nn.Linear) -> torch.Tensor:
        weight = layer.weight
        version = -1 if torch.is_inference(weight) else weight._version
        held = self.packed.get(layer)
        if held is None or held[0] is not weight or held[1].data_ptr() != weight.data_ptr() or held[2] != version:
            data = weight.detach()
            held = self.packed[layer] = (
                weight,
                data,
                version,
                torch.ops.mkldnn._reorder_linear_weight(data, PACK_ROWS),
            )
        return held[3]


def _packing_is_exact(layers: list[nn.Linear]) -> bool:
    """Whether packed weights give the plain weights' bits on this CPU, for each distinct layer shape of the
    model (with its bias or not) at a few row counts; where they do not, the engine does not pack."""
    shapes = {(layer.out_features, layer.in_features, layer.bias is not None) for layer in layers}
    generator = torch.Generator().manual_seed(0)
    for out_features, in_features, bias in shapes:
        weight = torch.randn(out_features, in_features, generator=generator)
        b = torch.randn(out_features, generator=generator) if bias else None
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS)
        for rows in (2, 5, 8, 33):
            x = torch.randn(rows, in_features, generator=generator)
            if not torch.equal(_onednn(x, weight, b), _onednn(x, packed, b)):
                return False
    return True


def memory_bytes() -> int:
    """This machine's memory, or the container's limit where one is set (cgroup v2 or v1)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): pack only what surely fits
        return 8 << 30
    for limit in _cgroup_limits():
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _cgroup_limits() -> list[str]:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    paths = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths.append(f"/sys/fs/cgroup{path.rstrip('/')}/memory.max")
        elif "memory" in controllers.split(","):
            paths.append(f"/sys/fs/cgroup/memory{path.rstrip('/')}/memory.limit_in_bytes")
    return paths + ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]


def _float32_cpu(weight: torch.Tensor) -> bool:
    return weight.dtype == torch.float32 and weight.device.type == "cpu"


def _eligible(module: nn.Module) -> bool:
    """Exactly nn.Linear (not a quantized or LoRA subclass) with a plain float32 CPU weight (not a tensor
    subclass such as torchao's), and not already wrapped by a hook that replaced its forward (accelerate's
    offloading)."""
    weight = getattr(module, "weight", None)
    return (
        type(module) is nn.Linear
        and isinstance(weight, torch.Tensor)
        and type(weight.data) is torch.Tensor
        and _float32_cpu(weight)
        and weight.layout == torch.strided
        and weight.dim() == 2
        and "forward" not in module.__dict__
    )
