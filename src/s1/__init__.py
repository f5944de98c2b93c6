"""s1: budget forcing and test-time scaling for reasoning models (Muennighoff et al., 2025)."""

from .errors import UserError
from .forcing import BudgetForcing
from .formats import FORMATS, R1, S1, ThinkingFormat
from .engines import Completion, Sampling, load_engine
from .generate import generate

__version__ = "0.1.0"
__all__ = [
    "BudgetForcing",
    "Completion",
    "FORMATS",
    "R1",
    "S1",
    "Sampling",
    "ThinkingFormat",
    "UserError",
    "generate",
    "load_engine",
]
