"""Checkers: pure functions from a history to a verdict.

Each returns a dict with at least ``valid`` ("valid", "invalid" or
"unknown"), ``anomaly_types``, ``anomalies`` (type -> a few examples, each
naming the ops that form it), ``anomaly_counts`` and ``notes``.
"""

from ordojepsen.checkers import bank, elle, linear, ryw

__all__ = ["bank", "elle", "linear", "ryw"]
