"""Task sets for the agent benchmarks: the built tinydb tasks when they exist, else hand-made fixture bugs.

Imported by agent_validations.py and solve_matrix.py (run_all.py skips names starting with "_").
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from _results import results_dir, write_result  # noqa: F401  (re-exported for the agent benchmarks)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = results_dir()  # this run's output folder, not the committed reference records
# The project root first: with tests/ on the path, `envs` would otherwise resolve to tests/envs.
sys.path.insert(0, str(ROOT))
for extra in (ROOT / "tests", ROOT / "tests" / "envs" / "agents"):
    if str(extra) not in sys.path:
        sys.path.append(str(extra))


def tinydb_tasks(path: Path | None = None) -> tuple[list, str] | None:
    """(tasks, source) from data_dir()/tasks/tinydb.jsonl (or ``path``) when its repository is built."""
    from hrm_spawn.envs.paths import repos_dir, tasks_dir
    from hrm_spawn.envs.tasks import load_tasks

    path = path or tasks_dir() / "tinydb.jsonl"
    if not path.is_file():
        return None
    loaded = load_tasks(path)
    tasks = [t for t in loaded.tasks if (repos_dir() / t.repo / "repo.json").is_file()]
    return (tasks, str(path)) if tasks else None


def fixture_tasks(names: list[str] | None = None) -> tuple[list, str]:
    """Hand-made bugs on the calc fixture, built in a temporary HRM_SPAWN_HOME."""
    os.environ["HRM_SPAWN_HOME"] = tempfile.mkdtemp(prefix="hrm-bench-agents-")
    from agent_bugs import BUGS, make_bug_task
    from fixtures.fixture_repo import build_fixture_repo

    repo = build_fixture_repo()
    names = names or [n for n in BUGS if n != "hang"]
    return [
        make_bug_task(repo, n) for n in names
    ], "fixture:calc hand-made bugs (tests/envs/agents/agent_bugs.py)"
