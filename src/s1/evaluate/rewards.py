"""Reward models behind one small interface: score (question, steps) pairs, one score per step.

A process reward model (PRM) scores every step of a partial or full solution; an outcome reward model
(ORM) scores the whole and gives one score, for the last step. Search methods read what they need:
REBASE the score of a node's last step, best-of-N and weighted majority one score per trajectory
(`aggregate`). Backends:

- `TokenClassPRM`: a transformers token-classification model read at the end of each step, where the
  step tag is written (steps joined by a tag, a two-way head whose second class is "good");
- `ShepherdPRM`: a causal LM read at each step tag as the probability of a "good" token against a "bad"
  one (Math-Shepherd's `ки` tag with `+`/`-`);
- `OutcomeRM`: a sequence-classification model (one logit: its sigmoid; several: the last class's
  probability);
- `HTTPReward`: a vLLM-style `/pooling` endpoint (vLLM serving a reward model, or `s1 serve --reward-model`);
- `CallableReward`: a Python function, for synthetic tasks with a known checker.

Every backend reports the tokens it scored, so a method's reward-model compute is accounted for.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from s1.core.errors import UserError, first_line
from s1.core.loader import load_function

AGGREGATES = ("last", "min", "mean", "prod")
log = logging.getLogger("s1.rewards")


@dataclass(frozen=True)
class Scored:
    steps: list[float]
    """One score per step (an ORM: the last step's alone, the others NaN)."""
    tokens: int
    """Tokens the reward model processed for this item."""


class RewardModel(Protocol):
    name: str

    def score(self, items: list[tuple[str, list[str]]]) -> list[Scored]: ...


def aggregate(scores: list[float], how: str = "last") -> float:
    """One number for a trajectory from its steps' scores (NaN steps, an ORM's, are skipped)."""
    values = [s for s in scores if not math.isnan(s)]
    if not values:
        return float("nan")
    if how == "last":
        return values[-1]
    if how == "min":
        return min(values)
    if how == "mean":
        return sum(values) / len(values)
    if how == "prod":
        return math.prod(values)
    raise UserError(f"Unknown reward aggregate {how!r}; choose from {', '.join(AGGREGATES)}.")


def split_steps(thinking: str, answer: str | None, delimiter: str = "\n\n") -> list[str]:
    """A full solution as steps: its thinking split at the step delimiter (blank parts dropped), then the answer."""
    steps = [s.strip() for s in thinking.split(delimiter) if s.strip()]
    if answer and answer.strip():
        steps.append(answer.strip())
    return steps or [""]


class _Transformers:
    """Shared by the transformers backends: the tokenizer, the tag and how items become token ids."""

    def __init__(self, path: str, step_tag: str, model_class):
        from transformers import AutoTokenizer

        from s1.core.models import pick_device, pick_dtype

        device = pick_device("auto")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model, info = model_class.from_pretrained(
                path, local_files_only=True, dtype=pick_dtype("auto", device), output_loading_info=True
            )
        except (OSError, ValueError) as exc:
            raise UserError(
                f"Could not load a reward model from {path} ({first_line(exc)}); "
                "pass a saved transformers reward model directory."
            ) from None
        if info.get("missing_keys"):
            # a head the checkpoint lacks would be initialized at random and score noise, silently
            raise UserError(
                f"{path} has no trained weights for {', '.join(sorted(info['missing_keys'])[:3])} as a "
                f"{model_class.__name__[4:]}; pass the --reward-kind that matches how it was trained."
            )
        self.model.to(device).eval()
        if device == "cpu":
            from s1.engines.threads import use_free_cores

            use_free_cores()  # scoring on a shared machine: only the cores other processes leave free
        self.device = device
        self.name = path
        self.tag_ids = self.tokenizer.encode(step_tag, add_special_tokens=False)
        if not self.tag_ids:
            raise UserError(f"The step tag {step_tag!r} encodes to no tokens; pass another --step-tag.")

    def encode(self, question: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """Token ids of the question and the steps, each step followed by the tag; and the index of each
        tag's last token, where the step's score is read."""
        ids = self.tokenizer.encode(question + "\n", add_special_tokens=True)
        ends = []
        for step in steps:
            ids += self.tokenizer.encode(step, add_special_tokens=False) + self.tag_ids
            ends.append(len(ids) - 1)
        return ids, ends

    def fits(self, ids: list[int]) -> bool:
        """A solution longer than the reward model's context is not scored (NaN, with a warning) rather
        than ending a run that generated for hours."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit and len(ids) > limit:
            log.warning(
                "reward model: a solution of %d tokens is longer than its context (%d); not scored", len(ids), limit
            )
            return False
        return True

    def run(self, ids: list[int]):
        import torch

        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0].float()

    def score(self, items: list[tuple[str, list[str]]]) -> list[Scored]:
        out = []
        for question, steps in items:
            ids, ends = self.encode(question, steps)
            if not self.fits(ids):
                out.append(Scored([float("nan")] * len(steps), 0))
                continue
            out.append(Scored(self.read(self.run(ids), ends), len(ids)))
        return out

    def read(self, logits, ends: list[int]) -> list[float]:
        """One score per step from the model's output (each backend reads its own head)."""
        raise NotImplementedError


class TokenClassPRM(_Transformers):
    def __init__(self, path: str, step_tag: str = "<extra_0>"):
        from transformers import AutoModelForTokenClassification

        super().__init__(path, step_tag, AutoModelForTokenClassification)

    def read(self, logits, ends: list[int]) -> list[float]:
        probs = logits.softmax(-1)
        return [float(probs[i, -1]) for i in ends]


class ShepherdPRM(_Transformers):
    def __init__(self, path: str, step_tag: str = "ки", good: str = "+", bad: str = "-"):
        from transformers import AutoModelForCausalLM

        super().__init__(path, step_tag, AutoModelForCausalLM)
        pair = [self.tokenizer.encode(t, add_special_tokens=False) for t in (good, bad)]
        if any(len(p) != 1 for p in pair):
            raise UserError(f"The good and bad tokens ({good!r}, {bad!r}) must each be one token of the reward model.")
        self.pair = [p[0] for p in pair]

    def read(self, logits, ends: list[int]) -> list[float]:
        probs = logits[:, self.pair].softmax(-1)
        return [float(probs[i, 0]) for i in ends]


class OutcomeRM(_Transformers):
    def __init__(self, path: str, step_tag: str = "\n\n"):
        from transformers import AutoModelForSequenceClassification

        super().__init__(path, step_tag, AutoModelForSequenceClassification)

    def read(self, logits, ends: list[int]) -> list[float]:
        """`logits` [labels] classify the whole solution: its score is the last step's."""
        value = float(logits[0].sigmoid()) if logits.numel() == 1 else float(logits.softmax(-1)[-1])
        return [float("nan")] * (len(ends) - 1) + [value]


class CallableReward:
    """A Python function `f(question, steps) -> float | list[float]` (one score, or one per step)."""

    def __init__(self, function: Callable, name: str = "callable"):
        self.function, self.name = function, name

    def score(self, items: list[tuple[str, list[str]]]) -> list[Scored]:
        out = []
        for question, steps in items:
            value = self.function(question, steps)
            values = (
                [float(v) for v in value]
                if isinstance(value, (list, tuple))
                else [float("nan")] * (len(steps) - 1) + [float(value)]
            )
            if len(values) != len(steps):
                raise UserError(
                    f"The reward function {self.name} returned {len(values)} scores for {len(steps)} steps."
                )
            out.append(Scored(values, 0))
        return out


class HTTPReward:
    """vLLM's Pooling API: POST {base}/pooling with chat `messages` (the question as the user turn, the steps
    joined by the step tag as the assistant's); each result's `data` is one vector per step (STEP pooling:
    [p_bad, p_good], the last entry read) or one vector for the whole (classification)."""

    def __init__(self, base_url: str, model: str | None = None, step_tag: str | None = None, timeout: float = 120.0):
        self.base = base_url.rstrip("/")
        if self.base.endswith("/v1"):
            self.base = self.base[:-3]
        self.model, self.timeout, self.name = model, timeout, base_url
        self.tag = step_tag or "\n\n"

    def score(self, items: list[tuple[str, list[str]]]) -> list[Scored]:
        import httpx

        out = []
        for question, steps in items:
            steps = [s.replace(self.tag, "\n").strip() or "." for s in steps]  # a step holds no tag of its own
            body = {
                "messages": [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": "".join(s + self.tag for s in steps)},
                ]
            }
            if self.model:
                body["model"] = self.model
            try:
                response = httpx.post(f"{self.base}/pooling", json=body, timeout=self.timeout)
            except httpx.HTTPError as exc:
                raise UserError(
                    f"The reward server at {self.base} could not be reached ({exc}); check --reward-model."
                ) from None
            if response.status_code != 200:
                raise UserError(
                    f"The reward server at {self.base} answered {response.status_code}: {response.text[:300]}"
                )
            try:
                payload = response.json()
                data = payload["data"][0]["data"]
                vectors = data if data and isinstance(data[0], list) else [data]
                values = [float(v[-1]) for v in vectors]
                tokens = int(payload.get("usage", {}).get("prompt_tokens", 0))
            except (ValueError, KeyError, IndexError, TypeError):
                raise UserError(
                    f"The reward server at {self.base} answered in a shape that is not vLLM's Pooling API "
                    f"({response.text[:200]!r}); point --reward-model at a /pooling server."
                ) from None
            if len(values) == 1 and len(steps) > 1:
                values = [float("nan")] * (len(steps) - 1) + values
            if len(values) != len(steps):
                raise UserError(
                    f"The reward server returned {len(values)} scores for {len(steps)} steps; "
                    "serve a PRM with STEP pooling on the step tag."
                )
            out.append(Scored(values, tokens))
        return out


def load_reward_model(spec: str, kind: str = "auto", step_tag: str | None = None) -> RewardModel:
    """A reward model from what a user passes: a model directory, an http(s) URL of a pooling server, or
    `module:function` naming a Python scorer. `kind` picks the head for a directory: auto (from the
    config's architecture), prm (token classification), shepherd (good-token probability), orm."""
    if not spec:
        raise UserError("--reward-model is empty; pass a model directory, an http:// URL or module:function.")
    if spec.startswith(("http://", "https://")):
        return HTTPReward(spec, step_tag=step_tag)
    path = Path(spec).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if not config.exists():
            raise UserError(f"{spec} holds no config.json; pass a saved transformers reward model directory.")
        arch = " ".join(json.loads(config.read_text()).get("architectures") or [])
        if "ProcessRewardModel" in arch:
            raise UserError(
                f"{spec} is a {arch} with its own code (such as Qwen2.5-Math-PRM), which s1 does not load; "
                "serve it with vLLM (--task reward) and pass --reward-model http://host:port."
            )
        if kind == "auto":
            kind = "orm" if "SequenceClassification" in arch else "prm" if "TokenClassification" in arch else "shepherd"
        makers = {"prm": TokenClassPRM, "shepherd": ShepherdPRM, "orm": OutcomeRM}
        if kind not in makers:
            raise UserError(f"Unknown --reward-kind {kind!r}; choose auto, prm, shepherd or orm.")
        return makers[kind](str(path), step_tag) if step_tag else makers[kind](str(path))
    module, colon, attribute = spec.partition(":")
    if colon and module and attribute:
        return CallableReward(load_function(spec, "the reward function"), spec)
    raise UserError(f"--reward-model {spec!r} is neither a directory, an http(s) URL nor module:function.")


def save_random_reward_model(tokenizer, path, kind: str = "prm", seed: int = 0) -> str:
    """A tiny random reward model of `kind` (prm, orm, shepherd) on `tokenizer`, saved as a model directory:
    its scores are random, so it exercises the machinery (tags, scores per step, tokens scored) offline,
    for the tests and for trying search without a real PRM (scripts/tiny_prm.py)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, LlamaForTokenClassification

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=8192,
        num_labels=1 if kind == "orm" else 2,
        pad_token_id=2,
        initializer_range=0.5,
    )
    model = {"prm": LlamaForTokenClassification, "orm": LlamaForSequenceClassification, "shepherd": LlamaForCausalLM}[
        kind
    ](config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
