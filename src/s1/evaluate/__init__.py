"""Evaluation: settings and methods, the runner, search, rewards, records, metrics."""
