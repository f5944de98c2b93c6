"""The command line: one module per command over a shared app (common.py); options for settings are derived
from the settings' own declarations (settings.py). `s1.cli:main` is the console script."""

# isort: off
# each module registers its command; `s1 --help` lists them in this order
from s1.cli import generate, eval, report, demo, train, serve, curate, models  # noqa: F401
from s1.cli.common import app, main

# isort: on

__all__ = ["app", "main"]
