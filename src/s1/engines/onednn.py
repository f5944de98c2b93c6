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
take at most PACK_SHARE of the machine's memory, and used only for two rows or more: there they give
bit for bit what the plain weights give, while at one row oneDNN's plain path rounds differently from
the packed one. So whether a machine packs changes speed, never a result.

The layers are switched over only for the engine's own forwards (`OneDNNLinears.active`): each plain
`nn.Linear` gets an instance `forward` for their length, so the same model object computes with torch's
own linear everywhere else (`generate`, training) and nothing about it is kept or saved.
"""

from __future__ import annotations

import os
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
    """Whether this torch has oneDNN's linear and it computes what `F.linear` does (else nothing changes)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        x, w, b = torch.randn(3, 16), torch.randn(8, 16), torch.randn(8)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, PACK_ROWS)
        reference = nn.functional.linear(x, w, b)
        return all(torch.allclose(_onednn(x, weight, b), reference, rtol=1e-4, atol=1e-5) for weight in (w, packed))
    except Exception:  # an op missing or refused in this build: keep torch's own linear
        return False


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


class OneDNNLinears:
    """The model's plain float32 CPU linear layers, switched to oneDNN inside `active()`; kept by the engine
    so prepacked weights outlive a single `generate` call."""

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if _eligible(m)] if available() else []
        weight_bytes = sum(layer.weight.numel() * layer.weight.element_size() for layer in self.layers)
        self.pack = weight_bytes <= PACK_SHARE * memory_bytes()
        self.packed: dict[nn.Linear, tuple[tuple[int, int], torch.Tensor]] = {}
        """Per layer: which weight was packed (its address and version counter: a weight replaced or changed in
        place, by training, is packed again) and the packed copy."""

    @contextmanager
    def active(self):
        for layer in self.layers:
            layer.forward = partial(self._forward, layer)  # an instance attribute shadows nn.Linear.forward
        try:
            yield
        finally:
            for layer in self.layers:
                layer.__dict__.pop("forward", None)

    def _forward(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        one_row = x.numel() == x.shape[-1]
        return _onednn(x, layer.weight if one_row or not self.pack else self._packed(layer), layer.bias)

    def _packed(self, layer: nn.Linear) -> torch.Tensor:
        weight = layer.weight
        which = (weight.data_ptr(), weight._version)
        held = self.packed.get(layer)
        if held is None or held[0] != which:
            held = self.packed[layer] = (which, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_ROWS))
        return held[1]


def memory_bytes() -> int:
    """This machine's memory, or the container's limit where one is set (cgroup v2)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        return min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        return total


def _eligible(module: nn.Module) -> bool:
    """Exactly nn.Linear (not a quantized or LoRA subclass), float32 on CPU, and not already wrapped by a
    hook that replaced its forward (accelerate's offloading)."""
    return (type(module) is nn.Linear and module.weight.dtype == torch.float32 and module.weight.device.type == "cpu"
            and module.weight.dim() == 2 and "forward" not in module.__dict__)
