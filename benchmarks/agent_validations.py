"""Candidate validations per second per core through the warm fork validator (goal 5).

On a built tinydb task when data_dir()/tasks/tinydb.jsonl and its repository exist, else on the calc
fixture. One worker command (one process at a time, so one core) validates a batch of real candidates (every family
at the top-ranked lines) the way a repair agent does: F2P first, P2P only for improving candidates. The
rate counts the whole sandbox command, worker start-up included. A sample is re-checked with a plain
pytest run through the sandbox (``Sandbox.run_tests``) and the verdicts compared; the record also says how
many candidates took the validator's fast path (code swapped into its warm, collected session) and why
the others took a fresh import.
Writes agent_validations_per_s.json into the bench output folder (_results.results_dir()).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections import Counter

from _agent_tasks import fixture_tasks, tinydb_tasks, write_result

from hrm_spawn.envs.agents.localize import localize
from hrm_spawn.envs.agents.mutate import FAMILIES, mutate_sites
from hrm_spawn.envs.agents.repair import SCRATCH, _Session
from hrm_spawn.envs.results import Cost
from hrm_spawn.envs.sandbox import Sandbox


def pick_task():
    found = tinydb_tasks()
    if found:
        tasks, source = found
        single = [t for t in tasks if len(t.modifier_kinds) <= 1] or tasks
        # the median task by FAIL_TO_PASS size: each validation runs those tests, so the first task by
        # name (tinydb: a removed base class failing 120 tests) would measure the worst case, not a typical one
        ranked = sorted(single, key=lambda t: (len(t.FAIL_TO_PASS), t.instance_id))
        return ranked[len(ranked) // 2], source
    tasks, source = fixture_tasks(["operators"])
    return tasks[0], source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", type=int, default=60)
    parser.add_argument("--verify", type=int, default=4, help="candidates re-checked with a plain pytest run")
    parser.add_argument(
        "--verify-fresh",
        action="store_true",
        help="also rerun the whole batch with fresh-import children only and compare every status",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # host-execution warning of the local sandbox
    task, source = pick_task()
    f2p, p2p = list(task.FAIL_TO_PASS), list(task.PASS_TO_PASS)
    with Sandbox() as sb:
        sb.prepare(task)
        session = _Session(sb, Cost())
        session.ship_validator()
        base = session.worker({"mode": "run", "f2p": f2p, "p2p": p2p, "coverage": True}, 600)
        failed = {t for t, s in base["status"].items() if s not in ("PASSED", "XFAIL")}
        sites = [
            (s.file, s.line)
            for s in localize(base["failures"], sb.repo_dir, base["coverage"], failed, read=session.read)
        ]
        # then every line of the files involved, so the batch is as large as an agent's
        for path in dict.fromkeys(f for f, _ in sites):
            sites += [(path, n) for n in range(1, session.read(path).count("\n") + 2)]
        cands = mutate_sites(session.read, sites, FAMILIES)[: args.candidates]
        job = {
            "mode": "validate",
            "f2p": f2p,
            "p2p": p2p,
            "stop_on_fix": False,
            "p2p_mode": "improved",
            "baseline": {"f2p": sum(t not in failed for t in f2p), "p2p": sum(t not in failed for t in p2p)},
            "timeout_s": 30,
            "candidates": [{"id": str(i), "files": {c.file: c.text}} for i, c in enumerate(cands)],
        }
        session.write(f"{SCRATCH}/job.json", json.dumps(job))
        start = time.perf_counter()
        out = session.worker(job, 1200)
        seconds = time.perf_counter() - start
        results = out["results"]
        same_as_fresh = ""
        if args.verify_fresh:  # the whole batch again with fresh-import children only (the old validator)
            slow = session.worker({**job, "fast": False}, 2400)
            same = sum(
                a["status"] == b["status"] and a["fixed"] == b["fixed"]
                for a, b in zip(results, slow["results"], strict=True)
            )
            same_as_fresh = (
                f"{same}/{len(results)} identical statuses; fresh-only worker "
                f"{len(results) / slow['cpu_s']:.3f} validations/CPU-s"
            )
        session.run(f"rm -rf {SCRATCH}", 30)
        agree, checked = 0, 0
        step = max(1, len(results) // max(1, args.verify))
        sample = results[::step][
            : args.verify
        ]  # plus a fresh-import one and one that ran P2P, when there are
        sample += [e for e in results if e.get("path") != "fast"][:1] + [
            e for e in results if e["p2p_passed"] is not None
        ][:1]
        for entry in {e["id"]: e for e in sample}.values():
            cand = cands[int(entry["id"])]
            sb.reset()
            sb.write_file(cand.file, cand.text)
            ids = f2p + (p2p if entry["p2p_passed"] is not None else [])
            plain = sb.run_tests(ids).status
            agree += all(entry["status"].get(t) == plain.get(t) for t in ids)
            checked += 1
        sb.reset()
    wall_rate = len(results) / seconds
    rate = len(results) / out["cpu_s"]  # per core: the worker is one process (plus one child at a time)
    improved = sum(e["p2p_passed"] is not None for e in results)
    fresh = Counter(e.get("fresh_reason", "").split(": ", 1)[-1] for e in results if e.get("path") != "fast")
    write_result(
        "agent_validations_per_s",
        rate,
        "validations/s/core",
        5.0,
        True,
        {
            "tasks": source,
            "instance_id": task.instance_id,
            "repo": task.repo,
            "candidates": len(results),
            "command_s": round(seconds, 3),
            "worker_wall_s": round(out["wall_s"], 3),
            "worker_cpu_s": round(out["cpu_s"], 3),
            "validations_per_wall_s": round(wall_rate, 3),
            "f2p_tests": len(f2p),
            "p2p_tests": len(p2p),
            "candidates_with_p2p_run": improved,
            "fixed": sum(e["fixed"] for e in results),
            "fast_path": out.get("fast_path"),
            "candidates_fast": sum(e.get("path") == "fast" for e in results),
            "candidates_fresh": sum(fresh.values()),
            "fresh_reasons": dict(fresh.most_common()),
            "verified_against_plain_pytest": f"{agree}/{checked} identical verdicts",
            **({"verified_against_fresh_imports": same_as_fresh} if same_as_fresh else {}),
            "measure": "one sandbox command: the worker collects the tests once in a warm session and forks one child "
            "per candidate that swaps in the changed functions' code (a fresh-import child when it cannot; "
            "F2P; P2P when F2P improves); "
            "candidates = every family at the top-ranked lines; value = candidates / CPU seconds of the worker and "
            "its children (one process at a time = one core); validations_per_wall_s = candidates / wall "
            "seconds of the whole command (start-up included) on a shared, loaded machine",
        },
    )


if __name__ == "__main__":
    main()
