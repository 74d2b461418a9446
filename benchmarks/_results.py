"""The one writer of benchmark records, and where they go.

Fresh measurements go to an output folder, never into the checkout: ``$HRM_SPAWN_BENCH_OUT`` when
set (``run_all.py --out DIR`` sets it for every script), else ``$HRM_SPAWN_HOME/bench``. The records
committed in ``benchmarks/results/`` are the reference figures that ``run_all.py`` compares against;
measuring does not rewrite them (copy a fresh record there on purpose to update a reference).

A benchmark that cannot run here (no GPU, no quickstart run to read) calls ``skip(reason)``: it
prints the reason and exits with ``SKIPPED``, which ``run_all.py`` reports as skipped, not failed.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import NoReturn

REFERENCE = Path(__file__).resolve().parent / "results"
OUT_ENV = "HRM_SPAWN_BENCH_OUT"
SKIPPED = 77  # the automake/ctest convention for "skipped"


def results_dir() -> Path:
    """Where this run's records go (created on demand)."""
    if os.environ.get(OUT_ENV):
        path = Path(os.environ[OUT_ENV]).expanduser()
    else:
        from hrm_spawn.envs.paths import data_dir

        path = data_dir() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def skip(reason: str) -> NoReturn:
    print(f"skipped: {reason}", flush=True)
    raise SystemExit(SKIPPED)


def write_result(
    name: str,
    value: float,
    unit: str,
    goal: float | None,
    higher_is_better: bool,
    meta: dict,
    directory: Path | None = None,
) -> Path:
    """Write and print one record (to ``results_dir()`` unless ``directory`` is given). ``meta`` gains
    the machine and the 1-minute load average (figures on a shared machine move with its load) unless
    it names them itself."""
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
    directory = directory or results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2), flush=True)
    return path
