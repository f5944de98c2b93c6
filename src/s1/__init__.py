"""s1: budget forcing and test-time scaling for reasoning models (Muennighoff et al., 2025)."""

from s1.core.errors import UserError
from s1.core.forcing import BudgetForcing
from s1.core.formats import FORMATS, R1, S1, ThinkingFormat
from s1.core.sampling import Sampling
from s1.core.version import __version__
from s1.engines import Completion, load_engine
from s1.generate import generate

__all__ = [
    "BudgetForcing",
    "Completion",
    "FORMATS",
    "R1",
    "S1",
    "Sampling",
    "ThinkingFormat",
    "UserError",
    "__version__",
    "generate",
    "load_engine",
]
