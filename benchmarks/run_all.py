"""``make bench``: run every benchmark script, then print each figure against its goal.

Each script writes ``benchmarks/results/<name>.json`` with name, value, unit, goal, higher_is_better, meta.
A script that fails is reported and the others still run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def run_scripts(console: Console) -> dict[str, int]:
    codes = {}
    for script in sorted(HERE.glob("*.py")):
        if script.name == Path(__file__).name or script.name.startswith("_"):
            continue
        console.rule(script.name)
        start = time.perf_counter()
        codes[script.name] = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        console.print(f"{script.name}: exit {codes[script.name]} in {time.perf_counter() - start:.1f}s")
    return codes


def meets(result: dict) -> str:
    value, goal = result.get("value"), result.get("goal")
    if value is None or goal is None:
        return "-"
    ok = value >= goal if result.get("higher_is_better", True) else value <= goal
    return "[green]yes[/]" if ok else "[red]no[/]"


def results_table() -> Table:
    table = Table(title="benchmarks/results")
    for col in ("name", "value", "unit", "goal", "meets goal"):
        table.add_column(col)
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        if "value" not in result:
            continue
        value = result["value"]
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        table.add_row(
            result.get("name", path.stem),
            shown,
            str(result.get("unit", "")),
            str(result.get("goal")),
            meets(result),
        )
    return table


def main() -> int:
    console = Console()
    RESULTS.mkdir(exist_ok=True)
    codes = {} if "--table-only" in sys.argv else run_scripts(console)
    console.print(results_table())
    failed = [name for name, code in codes.items() if code != 0]
    if failed:
        console.print(f"[red]failed scripts: {', '.join(failed)}[/]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
