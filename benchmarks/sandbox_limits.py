"""The sandbox's limits, timed: output floods (1, 5, 20 MB) and the kill latency of a timed-out command.

Flood: seconds of ``Sandbox.run`` for a command writing N MB to stdout. The output goes to a file in the sandbox and comes back cut to ``output_limit_bytes`` (default 1 MB), so
the cost should grow linearly with the bytes written. Runs on the ``calc`` fixture (the repository does
not matter). Writes benchmarks/results/sandbox_flood_20mb_s.json (seconds for 20 MB; the other sizes and
the per-MB cost in meta). Kill latency: ``run("sleep 300", timeout_s=1)`` minus the 1 s, median of 5
(how far past its timeout, or past a ``Sandbox.deadline``, a command can run), written to
benchmarks/results/sandbox_kill_latency_s.json. ``--baseline FILE`` times an older envs/sandbox.py (e.g. from
``git show REV:envs/sandbox.py``) on 1 and 5 MB for comparison (20 MB took 105 s before the cap).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _results import write_result  # noqa: E402
from fixtures.bench_setup import make_task, pick_repo  # noqa: E402

from hrm_spawn.envs.sandbox import Sandbox  # noqa: E402

SIZES_MB = (1, 5, 20)


def flood_seconds(sandbox_cls: type, task, sizes_mb: tuple[int, ...]) -> dict[int, float]:
    seconds = {}
    with sandbox_cls() as sb:
        sb.prepare(task)
        for mb in sizes_mb:
            start = time.perf_counter()
            result = sb.run(f"head -c {mb * 1_000_000} /dev/zero | tr '\\0' x", timeout_s=600)
            seconds[mb] = round(time.perf_counter() - start, 3)
            assert result.exit_code == 0, result.output[-500:]
    return seconds


def kill_latency_s(task, repeats: int = 5) -> list[float]:
    latencies = []
    with Sandbox() as sb:
        sb.prepare(task)
        for _ in range(repeats):
            result = sb.run("sleep 300", timeout_s=1.0)
            assert result.timed_out
            latencies.append(round(result.duration_s - 1.0, 3))
    return sorted(latencies)


def _load_old(path: Path) -> type:
    spec = importlib.util.spec_from_file_location("hrm_spawn.envs._sandbox_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module.Sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="an older envs/sandbox.py to time on 1 and 5 MB")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # the host-execution warning; this is our own repo
    task = make_task(pick_repo())
    now = flood_seconds(Sandbox, task, SIZES_MB)
    meta = {
        "deployment": "local",
        "seconds_by_mb": now,
        "per_mb_s_at_20mb": round(now[20] / 20, 4),
        "measure": "Sandbox.run of `head -c N /dev/zero | tr '\\0' x` with the default output_limit_bytes",
    }
    if args.baseline:
        meta["baseline_seconds_by_mb"] = flood_seconds(_load_old(args.baseline), task, (1, 5))
    write_result("sandbox_flood_20mb_s", now[20], "s", None, False, meta)
    latencies = kill_latency_s(task)
    write_result(
        "sandbox_kill_latency_s",
        statistics.median(latencies),
        "s",
        None,
        False,
        {
            "deployment": "local",
            "latencies_s": latencies,
            "measure": "Sandbox.run('sleep 300', timeout_s=1).duration_s - 1: kill every process of the "
            "sandbox but the shell, then resynchronise the prompt",
        },
    )


if __name__ == "__main__":
    main()
