"""Curation (s1K): from a raw pool to N hard, diverse, clean examples, resumable at every step.

Stages, one module each, over one SQLite store (`store.py`) and one model-call cache (`calls.py`):
collect -> decontaminate -> traces -> quality -> difficulty -> diversity -> select -> export.
`pipeline.run(config)` runs them; `config.load_config(path)` reads a YAML config.
"""

from s1.curate.config import CurateConfig, load_config
from s1.curate.pipeline import run, status
from s1.curate.store import STAGES

__all__ = ["CurateConfig", "load_config", "run", "status", "STAGES"]
