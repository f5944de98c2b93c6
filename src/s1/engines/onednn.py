"""Float32 linear layers through oneDNN while the transformers engine steps on a CPU.

torch computes a float32 `nn.Linear` on CPU with MKL's sgemm. At the few rows a decoding step has, and on
CPUs where MKL does not take its fast paths (AMD's), that is most of a step: on this project's 2-core
EPYC VM the 211 linear layers of SmolLM2-135M took 61 ms at 8 rows through sgemm and 39 ms through oneDNN
(at 1 row 48 against 29; 512 rows 840 against 728), the library torch already ships and uses for its
CPU bf16 matmuls. Both compute in float32; the sums are accumulated in another order, so results differ
in the last bits only (greedy outputs equal `transformers.generate`'s: tests/test_equivalence.py).

The layers are switched over only for the engine's own forwards (`OneDNNLinears.active`): each plain
`nn.Linear` gets an instance `forward` for their length, so the same model object computes with torch's
own linear everywhere else (`generate`, training) and nothing about it is kept or saved. Weights are used
as they are (oneDNN reorders them per call): prepacking them was 1.4x faster again at 8 rows but would
hold a second copy of every weight.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import cache, partial

import torch
from torch import nn


@cache
def available() -> bool:
    """Whether this torch has oneDNN's linear and it computes what `F.linear` does (else nothing changes)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        x, w, b = torch.randn(3, 16), torch.randn(8, 16), torch.randn(8)
        return bool(torch.allclose(_onednn(x, w, b), nn.functional.linear(x, w, b), rtol=1e-4, atol=1e-5))
    except Exception:  # an op missing or refused in this build: keep torch's own linear
        return False


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


def _forward(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return _onednn(x, layer.weight, layer.bias)


class OneDNNLinears:
    """The model's plain float32 CPU linear layers, switched to oneDNN inside `active()`."""

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if _eligible(m)] if available() else []

    @contextmanager
    def active(self):
        for layer in self.layers:
            layer.forward = partial(_forward, layer)  # an instance attribute shadows nn.Linear.forward
        try:
            yield
        finally:
            for layer in self.layers:
                layer.__dict__.pop("forward", None)


def _eligible(module: nn.Module) -> bool:
    """Exactly nn.Linear (not a quantized or LoRA subclass), float32 on CPU, and not already wrapped by a
    hook that replaced its forward (accelerate's offloading)."""
    return (type(module) is nn.Linear and module.weight.dtype == torch.float32 and module.weight.device.type == "cpu"
            and module.weight.dim() == 2 and "forward" not in module.__dict__)
