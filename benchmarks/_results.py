"""The one writer of ``benchmarks/results/<name>.json`` (the records ``run_all.py`` tabulates)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(
    name: str,
    value: float,
    unit: str,
    goal: float | None,
    higher_is_better: bool,
    meta: dict,
    directory: Path = RESULTS,
) -> Path:
    """Write and print one record. ``meta`` gains the machine and the 1-minute load average (figures on a
    shared machine move with its load) unless it names them itself."""
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} threads", "load_avg_1m": load, **meta}
    record = {
        "name": name,
        "value": round(value, 4),
        "unit": unit,
        "goal": goal,
        "higher_is_better": higher_is_better,
        "meta": meta,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2), flush=True)
    return path
