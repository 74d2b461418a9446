"""``make bench``: run every benchmark script, then compare each fresh figure with the committed one.

Each script writes ``<name>.json`` (name, value, unit, goal, higher_is_better, meta) into the output
folder (``--out``, default ``$HRM_SPAWN_HOME/bench``), never into ``benchmarks/results/``: those
committed records are the reference figures, and the table puts this run's value beside them. A script
that cannot run here skips with a printed reason (exit 77); a script that fails is reported and the
others still run.

    python benchmarks/run_all.py                          # everything, into $HRM_SPAWN_HOME/bench
    python benchmarks/run_all.py --only reset_latency --out /tmp/bench
    python benchmarks/run_all.py --table-only             # compare what the output folder holds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _results import OUT_ENV, REFERENCE, SKIPPED, results_dir  # noqa: E402


@dataclass
class Run:
    script: str
    status: str  # ok | skipped | failed
    seconds: float
    note: str = ""  # the skip reason or the exit status


def scripts_in(folder: Path, only: list[str] | None = None) -> list[Path]:
    """Benchmark scripts: every ``*.py`` but this runner and helpers (names starting with ``_``)."""
    found = [
        p for p in sorted(folder.glob("*.py")) if p.name != Path(__file__).name and not p.name.startswith("_")
    ]
    if only:
        from hrm_spawn.envs.suggest import did_you_mean

        only = [Path(o).stem for o in only]  # `reset_latency.py` or `benchmarks/reset_latency.py` too
        stems = [p.stem for p in found]
        missing = sorted(set(only) - set(stems))
        if missing:
            raise SystemExit(
                f"run_all: no benchmark named {missing[0]!r}{did_you_mean(missing[0], stems)} in {folder}; "
                f"the benchmarks: {', '.join(stems)}"
            )
        found = [p for p in found if p.stem in only]
    return found


def run_script(script: Path, out: Path) -> Run:
    """Run one script with its output streamed through; remember a printed skip reason."""
    env = {
        **os.environ,
        OUT_ENV: str(out),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    print(f"── {script.name}", flush=True)
    start, reason = time.perf_counter(), ""
    with subprocess.Popen(
        [sys.executable, str(script)],
        cwd=HERE.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith("skipped: "):
                reason = line.removeprefix("skipped: ").strip()
    seconds = time.perf_counter() - start
    if proc.returncode == 0:
        return Run(script.name, "ok", seconds)
    if proc.returncode == SKIPPED:
        return Run(script.name, "skipped", seconds, reason or "no reason printed")
    return Run(script.name, "failed", seconds, f"exit {proc.returncode}")


def read_records(folder: Path, since: float = 0.0) -> dict[str, dict]:
    """name -> record, for every JSON record in ``folder`` that has a value (written at or after
    ``since``, a time.time(): a run compares only what it measured, not an earlier run's leftovers)."""
    records = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.stat().st_mtime < since:
            continue
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "value" in record:
            records[record.get("name", path.stem)] = record
    return records


def meets(record: dict) -> str:
    value, goal = record.get("value"), record.get("goal")
    if value is None or goal is None:
        return "-"
    ok = value >= goal if record.get("higher_is_better", True) else value <= goal
    return "yes" if ok else "no"


def _num(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def change(fresh: dict, reference: dict) -> str:
    """Relative change of this run against the reference, with its direction for the goal."""
    new, old = fresh.get("value"), reference.get("value")
    if not isinstance(new, int | float) or not isinstance(old, int | float) or old == 0:
        return "-"
    rel = new / old - 1
    better = rel > 0 if fresh.get("higher_is_better", True) else rel < 0
    word = "same" if abs(rel) < 0.005 else "better" if better else "worse"
    return f"{rel:+.1%} ({word})"


def comparison_rows(fresh: dict[str, dict], reference: dict[str, dict]) -> list[list[str]]:
    """One row per figure measured now or committed: name, unit, reference, this run, change, goal,
    meets goal (this run's; the reference's, marked, where the figure was not measured now)."""
    rows = []
    for name in sorted(set(fresh) | set(reference)):
        new, old = fresh.get(name), reference.get(name)
        shown = new or old
        assert shown is not None
        rows.append(
            [
                name,
                str(shown.get("unit", "")),
                _num(old["value"]) if old else "-",
                _num(new["value"]) if new else "not run",
                change(new, old) if new and old else "-",
                _num(shown.get("goal")),
                meets(new) if new else f"{meets(shown)} (reference)",
            ]
        )
    return rows


def print_table(rows: list[list[str]], out: Path, reference: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"this run ({out}) against the committed figures ({reference})")
    for col in ("name", "unit", "reference", "this run", "change", "goal", "meets goal"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console(width=max(120, os.get_terminal_size().columns if sys.stdout.isatty() else 160)).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for fresh records ($HRM_SPAWN_HOME/bench)"
    )
    parser.add_argument(
        "--only", action="append", default=None, help="run only this script (by stem; repeatable)"
    )
    parser.add_argument("--table-only", action="store_true", help="run nothing; compare the output folder")
    parser.add_argument("--scripts", type=Path, default=HERE, help=argparse.SUPPRESS)  # tests: a fake folder
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="committed reference records")
    args = parser.parse_args(argv)
    out = args.out.expanduser() if args.out else results_dir()
    out.mkdir(parents=True, exist_ok=True)
    started = 0.0 if args.table_only else time.time() - 1  # mtime granularity on some file systems
    runs = [] if args.table_only else [run_script(s, out) for s in scripts_in(args.scripts, args.only)]
    fresh = read_records(out, since=started)
    reference = read_records(args.reference)
    if args.only:  # the figures asked for, not twenty "not run" rows around them
        reference = {name: record for name, record in reference.items() if name in fresh}
    print_table(comparison_rows(fresh, reference), out, args.reference)
    for run in runs:
        if run.status != "ok":
            print(f"{run.script}: {run.status} ({run.note}) after {run.seconds:.1f} s")
    failed = [r.script for r in runs if r.status == "failed"]
    if failed:
        print(f"failed scripts: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
