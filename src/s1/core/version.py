"""s1's version, in the core so that every layer can record it (run directories' history.jsonl) without
importing the `s1` package's public API, which sits on top of the engines."""

__version__ = "0.1.0"
