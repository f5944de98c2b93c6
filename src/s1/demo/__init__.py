"""`s1 demo`: the s1 loop end to end on a toy task, offline on a CPU (see run.py)."""

from .run import QUICK, Plan, demo

__all__ = ["Plan", "QUICK", "demo"]
