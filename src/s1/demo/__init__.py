"""`s1 demo`: the s1 loop end to end on a toy task, offline on a CPU (see run.py)."""

from s1.demo.run import QUICK, Plan, demo

__all__ = ["Plan", "QUICK", "demo"]
