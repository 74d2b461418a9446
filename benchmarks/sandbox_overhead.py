"""Sandbox overhead: wall time of ``Sandbox.evaluate(patch)`` ÷ the bare test command's wall time (goal 1.10).

The bare command is the same pytest command (same test ids, same env) run directly with subprocess on the
sandbox's checkout with the patch applied. Runs on a built tinydb repository if ``data_dir()/repos/`` has
one, else on the ``calc`` fixture. Writes sandbox_overhead_ratio.json into the bench output folder (_results.results_dir()) (ratio of medians).
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _results import write_result  # noqa: E402
from fixtures.bench_setup import bare_run_seconds, make_task, pick_repo  # noqa: E402

from hrm_spawn.envs.sandbox import Sandbox  # noqa: E402

REPEATS = 7


def main() -> None:
    warnings.simplefilter("ignore", RuntimeWarning)  # the host-execution warning; this is our own repo
    repo = pick_repo()
    task = make_task(repo)
    ids = task.FAIL_TO_PASS + task.PASS_TO_PASS
    evaluate_s, bare_s = [], []
    with Sandbox() as sb:
        sb.prepare(task)
        patch = ""  # the buggy state itself as the candidate: evaluate runs every F2P+P2P test all the same
        for _ in range(REPEATS):  # interleaved, so load changes hit both sides alike
            start = time.perf_counter()
            evaluation = sb.evaluate(patch)
            evaluate_s.append(time.perf_counter() - start)
            sb.apply_patch(patch)
            bare_s.append(bare_run_seconds(sb, ids))
            sb.reset()
        assert evaluation.applied and evaluation.tests, "evaluate did not run the tests"
    ratio = statistics.median(evaluate_s) / statistics.median(bare_s)
    write_result(
        "sandbox_overhead_ratio",
        ratio,
        "x",
        1.10,
        False,
        {
            "repo": repo.name,
            "deployment": "local",
            "repeats": REPEATS,
            "tests": len(ids),
            "evaluate_median_s": round(statistics.median(evaluate_s), 4),
            "bare_median_s": round(statistics.median(bare_s), 4),
            "measure": "Sandbox.evaluate (reset, apply, F2P+P2P in the SWE-ReX session, reset) / the same "
            "pytest command via subprocess",
        },
    )


if __name__ == "__main__":
    main()
