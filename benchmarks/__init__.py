"""Benchmarks of Fleetweb: `python -m benchmarks --size quick|full` (or `make bench [SIZE=full]`).

They print figures; they assert nothing (tests assert behaviour). Every goal is judged as a ratio
against a baseline measured in the same run, or a bound far from the measured value, and every
timing is the median of several runs. Benchmarks use their own state folder (`.fleetweb/bench`:
embedded PostgreSQL, Redis, keys and local member clusters), never `make run`'s data.
"""
