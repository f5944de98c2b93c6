"""Float32 linear layers through oneDNN while the transformers engine steps on a CPU.

torch computes a float32 `nn.Linear` on CPU with MKL's sgemm. At the few rows a decoding step has, and on
CPUs where MKL does not take its fast paths (AMD's), that is most of a step: on this project's 2-core
EPYC VM the 211 linear layers of SmolLM2-135M took 61 ms at 8 rows through sgemm, 39 ms through oneDNN
and 28 ms through oneDNN with the weights prepacked in its blocked layout (at 1 row 48 against 29;
at 512 rows 840 against 728 and 657). oneDNN is the library torch already ships and uses for its CPU
bf16 matmuls. Both compute in float32; the sums are accumulated in another order, so results differ
from sgemm's in the last bits only (greedy outputs still equal `transformers.generate`'s:
tests/test_equivalence.py).

Prepacked copies are a second copy of every weight, so they are kept only when all the layers' weights
take at most PACK_SHARE of the machine's (or container's) memory, and used only for two rows or more:
there they gave bit for bit what the plain weights give on every shape tried (at one row oneDNN's plain
path rounds differently from the packed one), so whether a machine packs changes speed, not results —
tests/test_hf_engine.py checks this on whatever CPU runs it. `torch.backends.mkldnn.enabled = False`
switches all of this off.

The layers are switched over only for the engine's own forwards (`OneDNNLinears.active`): each plain
`nn.Linear` gets an instance `forward` for their length, so the same model object computes with torch's
own linear everywhere else (`generate`, training) and nothing about it is kept or saved.
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
def _works() -> bool:
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


def available() -> bool:
    """oneDNN's linear works here and is not switched off (`torch.backends.mkldnn.enabled = False` keeps
    torch's own linear in the engine too)."""
    return torch.backends.mkldnn.enabled and _works()


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


_SHARED: "weakref.WeakKeyDictionary[nn.Module, OneDNNLinears]" = weakref.WeakKeyDictionary()


class OneDNNLinears:
    """The model's plain float32 CPU linear layers, switched to oneDNN inside `active()`. Engines get one per
    model (`for_model`), so packed weights outlive a single `generate` call and several engines on one
    model share one packed copy; `prepare()` (each loop's start) packs what is missing or stale outside any
    timed step."""

    @classmethod
    def for_model(cls, model: nn.Module) -> "OneDNNLinears":
        if not available():
            return cls(model)
        shared = _SHARED.get(model)
        if shared is None:
            shared = _SHARED[model] = cls(model)
        return shared

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if _eligible(m)] if available() else []
        weight_bytes = sum(layer.weight.numel() * layer.weight.element_size() for layer in self.layers)
        self.pack = bool(self.layers) and weight_bytes <= PACK_SHARE * memory_bytes()
        self.packed: dict[nn.Linear, tuple[torch.Tensor, tuple[int, int], torch.Tensor]] = {}
        """Per layer: the weight packed (held, so its memory cannot be reused by another), its storage and
        version counter then (a weight changed in place by training, or given new data by `.to()`, is packed
        again) and the packed copy. A change made in place through `.data` (PEFT's merge) moves neither:
        call `engine.linears.forget()` after one."""

    def forget(self) -> None:
        """Drop the packed copies (the weights were changed in a way `_packed` cannot see)."""
        self.packed.clear()

    def prepare(self) -> None:
        if self.pack:
            for layer in self.layers:
                if layer.weight.dtype == torch.float32 and layer.weight.device.type == "cpu":
                    self._packed(layer)

    @contextmanager
    def active(self):
        switched = []
        try:
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
        if input.dtype != torch.float32 or weight.dtype != torch.float32 or weight.device.type != "cpu" or input.numel() == 0:
            return nn.functional.linear(input, weight, layer.bias)  # autocast, a model cast or moved since, no rows
        one_row = input.numel() == input.shape[-1]
        return _onednn(input, weight if one_row or not self.pack else self._packed(layer), layer.bias)

    def _packed(self, layer: nn.Linear) -> torch.Tensor:
        weight = layer.weight
        which = (weight.data_ptr(), -1 if torch.is_inference(weight) else weight._version)
        held = self.packed.get(layer)
        if held is None or held[0] is not weight or held[1] != which:
            held = self.packed[layer] = (weight, which, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_ROWS))
        return held[2]


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


def _eligible(module: nn.Module) -> bool:
    """Exactly nn.Linear (not a quantized or LoRA subclass) with a plain float32 CPU weight (not a tensor
    subclass such as torchao's), and not already wrapped by a hook that replaced its forward (accelerate's
    offloading)."""
    weight = getattr(module, "weight", None)
    return (type(module) is nn.Linear and isinstance(weight, torch.Tensor) and type(weight.data) is torch.Tensor
            and weight.dtype == torch.float32 and weight.device.type == "cpu" and weight.layout == torch.strided
            and weight.dim() == 2 and "forward" not in module.__dict__)
