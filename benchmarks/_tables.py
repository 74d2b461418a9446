"""The policy the table benchmarks (real_table.py, synthetic_table.py) train: one small HRM for both."""

from __future__ import annotations

from typing import Any


def small_hrm(seq_len: int) -> dict[str, Any]:
    """hrm-tiny shrunk to hidden size 32 and one H and one L cycle, so that a fold trains in CPU minutes.
    A fresh dict on every call: a caller may edit its config."""
    return {
        "preset": "policy/hrm-tiny",
        "seq_len": seq_len,
        "hidden_size": 32,
        "H_cycles": 1,
        "L_cycles": 1,
    }
