"""Benchmarks of the served model and of canary rollouts, and the faulty models they use.

Not part of the pr2prod package: run from the repository root as `python -m bench.serve`
and `python -m bench.canary` (or `make bench-serve`, `make bench-canary`).
"""
