"""Where fault localisation ranks the injected line: median rank and top-5/12/30 shares (goal: top-12 >= 0.7).

For each single-bug task of a tasks JSONL (default data_dir()/tasks/tinydb.jsonl): a local Sandbox prepares
the buggy repository, the repair agent's own first observation runs (``RepairAgent._observe`` with the
nearby PASS_TO_PASS tests, per-test coverage, long tracebacks, through the fork worker), ``localize()``
ranks the sites as the agent would, and the rank of the bug line is recorded: the first code line the
task's patch touched in the buggy version (``bug_lines``: its first added code line; for a patch that
only removes code, the first code line after the first removal). Removal kinds cannot be repaired by
mutation, so the headline value is the top-12 share (12 is the specialist agents' ``max_lines``) over
the invertible kinds; every kind is reported in meta.

Observations can be saved (``--save-obs``) and re-ranked without running tests (``--obs``), and an older
``localize.py`` given with ``--baseline FILE`` is ranked on the same observations for a before/after.
Use ``--repos-dir`` to keep the sandboxes' clones out of a read-only data directory.
Writes localization_rank.json into the bench output folder (_results.results_dir()).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _agent_tasks import tinydb_tasks, write_result
from _results import skip

from hrm_spawn.envs.agents.localize import localize
from hrm_spawn.envs.agents.repair import RepairAgent, _nearby, _Session
from hrm_spawn.envs.results import Cost
from hrm_spawn.envs.tasks import INVERTIBLE_KINDS as INVERTIBLE

TOPS = (5, 12, 30)
UNRANKED = 10**9  # a bug line localize() never names counts as last
GOAL_TOP12 = 0.7
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(?P<start>\d+)(?:,\d+)? @@")


def _code(text: str) -> bool:
    """A line that runs: not blank, not a comment, not a bare ``else:``/``try:``/``finally:`` (no line event)."""
    stripped = text.strip()
    return bool(stripped) and not stripped.startswith("#") and stripped not in ("else:", "try:", "finally:")


def bug_lines(patch: str) -> list[tuple[str, int]]:
    """(file, line in the buggy version) the patch touched, in patch order: its added code lines, or for a
    patch that only removes code, where each removal was (the first code line after it in its hunk, else
    the line it left). Blank and comment edits (SWE-smith re-indents docstrings) are not the bug."""
    added: list[tuple[str, int]] = []
    removals: list[tuple[str, int]] = []
    path, line, pending = "", 0, None  # pending: where the last code removal was, until a code line follows
    for raw in [*patch.splitlines(), "@@ end"]:
        if raw.startswith(("@@", "+++ ")) and pending:
            removals.append(pending)
            pending = None
        if raw.startswith("+++ "):
            path = raw[4:].removeprefix("b/").strip()
        elif (m := _HUNK.match(raw)) is not None:
            line = int(m.group("start"))
        elif raw.startswith("+"):
            if _code(raw[1:]):
                added.append((path, line))
            line += 1
        elif raw.startswith("-") and not raw.startswith("--- "):
            pending = pending or ((path, line) if _code(raw[1:]) else None)
        elif raw.startswith(" "):
            if pending and _code(raw[1:]):
                removals.append((path, line))
                pending = None
            line += 1
    return list(dict.fromkeys(added or removals))


def observe(sandbox: Any, task: Any) -> dict[str, Any]:
    """The agent's first visible run on the buggy repository, plus the texts localize() may read."""
    sandbox.prepare(task)
    session = _Session(sandbox, Cost())
    session.ship_validator()
    f2p, p2p = list(task.FAIL_TO_PASS), list(task.PASS_TO_PASS)
    base = RepairAgent()._observe(session, f2p, p2p, time.perf_counter() + 600, visible_p2p=_nearby(f2p, p2p))
    paths = {p for files in base["coverage"].values() for p in files} | {f for f, _ in bug_lines(task.patch)}
    texts = {}
    for path in sorted(paths):
        try:
            texts[path] = sandbox.read_file(path)
        except Exception:  # a file the bug removed: localize() cannot read it either
            continue
    return {
        "id": task.instance_id,
        "kinds": list(task.modifier_kinds),
        "patch": task.patch,
        "repo_dir": sandbox.repo_dir,
        "failures": base["failures"],
        "coverage": base["coverage"],
        "failed": sorted(base["failed"]),
        "texts": texts,
        "seconds": base["seconds"],
    }


def rank_of(obs: dict[str, Any], locate: Callable[..., list]) -> int | None:
    """1-based rank of the first bug line in ``locate``'s ranking; None when it is not ranked at all."""
    texts = obs["texts"]

    def read(path: str) -> str:
        if path not in texts:
            raise OSError(path)
        return texts[path]

    sites = locate(obs["failures"], obs["repo_dir"], obs["coverage"], obs["failed"], read=read)
    target = bug_lines(obs["patch"])[:1]
    order = {(s.file, s.line): i + 1 for i, s in enumerate(sites)}
    return order.get(target[0]) if target else None


def summary(ranks: list[int | None]) -> dict[str, Any]:
    """Median rank (None when the median task's line is not ranked at all) and the share in each top-N."""
    if not ranks:
        return {"n": 0}
    median = statistics.median_low([r if r is not None else UNRANKED for r in ranks])
    out: dict[str, Any] = {
        "n": len(ranks),
        "median_rank": None if median == UNRANKED else median,
        "missing": sum(r is None for r in ranks),
    }
    for top in TOPS:
        out[f"top{top}"] = round(sum(r is not None and r <= top for r in ranks) / len(ranks), 3)
    return out


def evaluate(observations: list[dict[str, Any]], locate: Callable[..., list]) -> dict[str, Any]:
    per_task = {obs["id"]: rank_of(obs, locate) for obs in observations}
    kinds: dict[str, list[int | None]] = {}
    for obs in observations:
        kinds.setdefault(obs["kinds"][0], []).append(per_task[obs["id"]])
    invertible = [per_task[o["id"]] for o in observations if o["kinds"][0] in INVERTIBLE]
    return {
        "all": summary(list(per_task.values())),
        "invertible": summary(invertible),
        "per_kind": {k: summary(v) for k, v in sorted(kinds.items())},
        "per_task": per_task,
    }


def _load_localize(path: str) -> Callable[..., list]:
    spec = importlib.util.spec_from_file_location("baseline_localize", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.localize


def collect(
    tasks_file: str | None, repos_dir: str | None, limit: int | None
) -> tuple[list[dict[str, Any]], str]:
    from hrm_spawn.envs.sandbox import Sandbox, SandboxConfig

    found = tinydb_tasks(Path(tasks_file) if tasks_file else None)
    if not found:
        skip(
            "localization_rank: no built tinydb task set under the data dir; build one with "
            "`hrm-spawn tasks build --repo pypi:tinydb==4.9.0 --out $HRM_SPAWN_HOME/tasks/tinydb.jsonl` "
            "or run `make quickstart` first"
        )
    tasks, source = found
    singles = [t for t in tasks if len(t.modifier_kinds) == 1][:limit]
    observations = []
    with Sandbox(SandboxConfig(repos_dir=repos_dir)) as sandbox:
        for task in singles:
            observations.append(observe(sandbox, task))
            print(f"{task.instance_id}: {observations[-1]['seconds']:.1f}s", file=sys.stderr)
    return observations, source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", help="tasks JSONL (default data_dir()/tasks/tinydb.jsonl)")
    parser.add_argument("--repos-dir", help="built repositories (default data_dir()/repos)")
    parser.add_argument("--limit", type=int, help="only the first N single-bug tasks")
    parser.add_argument("--obs", help="rank saved observations instead of running tests")
    parser.add_argument("--save-obs", help="save the observations (JSON) for --obs")
    parser.add_argument("--baseline", help="another localize.py to rank the same observations with")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # host-execution warning of the local sandbox
    if args.obs:
        saved = json.loads(Path(args.obs).read_text())
        observations, source = saved["observations"], saved["source"]
    else:
        observations, source = collect(args.tasks, args.repos_dir, args.limit)
    if args.save_obs:
        Path(args.save_obs).write_text(json.dumps({"source": source, "observations": observations}))
    current = evaluate(observations, localize)
    meta: dict[str, Any] = {
        "source": source,
        "tasks": len(observations),
        "target": "first code line of the bug patch",
        "current": current,
    }
    if args.baseline:
        meta["baseline"] = {"file": args.baseline, **evaluate(observations, _load_localize(args.baseline))}
    write_result(
        "localization_rank",
        current["invertible"].get("top12", 0.0),
        "share of invertible-kind bugs ranked in the top 12",
        GOAL_TOP12,
        True,
        meta,
    )


if __name__ == "__main__":
    main()
