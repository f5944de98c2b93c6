"""Benchmarks (task files, lm-eval field names) and grading, shared by curation and evaluation."""
