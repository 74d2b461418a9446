"""Reset latency of a prepared local Sandbox: seconds for ``reset()`` after an agent-like edit (goal 0.5 s).

Runs on a built tinydb repository if ``data_dir()/repos/`` has one, else on the ``calc`` fixture.
Writes reset_latency_s.json into the bench output folder (_results.results_dir()) (median over the repeats; p90 and max in meta).
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _results import write_result  # noqa: E402
from fixtures.bench_setup import make_task, pick_repo  # noqa: E402

from hrm_spawn.envs.sandbox import Sandbox  # noqa: E402

REPEATS = 20


def main() -> None:
    warnings.simplefilter("ignore", RuntimeWarning)  # the host-execution warning; this is our own repo
    repo = pick_repo()
    task = make_task(repo)
    times = []
    with Sandbox() as sb:
        sb.prepare(task)
        tracked = task.PASS_TO_PASS[0].split("::")[0]
        for i in range(REPEATS):
            # What an agent leaves behind: an edited tracked file, a new file, a build folder.
            sb.write_file(tracked, sb.read_file(tracked) + f"\n# edit {i}\n")
            sb.write_file(f"scratch_{i}.py", "x = 1\n")
            sb.run("mkdir -p build/lib && touch build/lib/junk.pyc")
            start = time.perf_counter()
            sb.reset()
            times.append(time.perf_counter() - start)
        assert sb.diff() == "", "reset left changes behind"
    times.sort()
    write_result(
        "reset_latency_s",
        statistics.median(times),
        "s",
        0.5,
        False,
        {
            "repo": repo.name,
            "deployment": "local",
            "repeats": REPEATS,
            "p90_s": round(times[int(0.9 * (len(times) - 1))], 4),
            "max_s": round(times[-1], 4),
            "measure": "Sandbox.reset() (git reset --hard + git clean -fdx in the SWE-ReX bash session) "
            "after editing a tracked file and adding untracked files",
        },
    )


if __name__ == "__main__":
    main()
