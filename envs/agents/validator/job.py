"""The job: read it, set the process up (no bytecode, the repository's paths, pytest imported warm),
validate candidates or run the tests once, write the result.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
import time

from .forking import pin_rootdir, run_forked, warm_up
from .warm import WarmSession


def _passed(status: dict, ids: list[str]) -> int:
    return sum(status.get(t) in ("PASSED", "XFAIL") for t in ids)


def _phase(
    pytest, root: str, warm: WarmSession | None, index: int, phase: str, ids: list[str], timeout_s: float
) -> tuple[dict, str]:
    """One candidate's tests in the warm session, else in a fresh-import child: (result, why fresh)."""
    if warm is None:
        why = "fast path off"
    elif not warm.alive:
        why = warm.why
    else:
        answer = warm.ask(index, phase)
        if answer is not None and "fresh" not in answer:
            return answer, ""
        why = answer["fresh"] if answer is not None else warm.why
    return run_forked(pytest, root, ids, timeout_s), why


def _start_warm(pytest, root: str, job: dict, timeout_s: float, deadline: float) -> WarmSession | None:
    """The warm session, when there is more than one candidate to amortise its start-up over."""
    if not job.get("fast", True) or len(job.get("candidates", [])) < 2:
        return None
    start_s = max(1.0, min(max(60.0, 4 * timeout_s), deadline - time.perf_counter()))
    try:
        return WarmSession(pytest, root, job, timeout_s, start_s)
    except OSError:  # no fork, no pipe: every candidate takes a fresh import
        return None


def validate(pytest, root: str, job: dict) -> dict:
    f2p, p2p = list(job.get("f2p", [])), list(job.get("p2p", []))
    base = job.get("baseline", {})
    base_f2p, base_p2p = int(base.get("f2p", 0)), int(base.get("p2p", len(p2p)))
    p2p_mode = job.get("p2p_mode", "improved")
    timeout_s = float(job.get("timeout_s", 30.0))
    deadline = time.perf_counter() + float(job.get("deadline_s", 1e9))
    candidates = job.get("candidates", [])
    originals: dict[str, str] = {}
    results, stopped, warmed = [], "", False
    warm = _start_warm(pytest, root, job, timeout_s, deadline)  # before any candidate is on disk
    try:
        for index, cand in enumerate(candidates):
            if time.perf_counter() > deadline:
                stopped = "deadline"
                break
            files = cand["files"]
            for path in files:
                if path not in originals:
                    with open(path, encoding="utf-8") as fh:
                        originals[path] = fh.read()
            try:
                for path, text in files.items():
                    with open(path, "w", encoding="utf-8") as fh:
                        fh.write(text)
                first, why = _phase(pytest, root, warm, index, "f2p", f2p, timeout_s)
                if not warmed and first.get("modules"):
                    warm_up(root, first["modules"])
                    warmed = True
                status = dict(first["status"])
                f2p_passed = _passed(status, f2p)
                entry = {
                    "id": cand["id"],
                    "f2p_passed": f2p_passed,
                    "seconds": first["seconds"],
                    "timed_out": bool(first.get("timed_out")),
                    "p2p_passed": None,
                    "path": "fresh" if why else "fast",
                }
                if why:
                    entry["fresh_reason"] = why
                if first.get("error"):
                    entry["error"] = first["error"]
                wanted = p2p_mode == "all" or (p2p_mode == "improved" and f2p_passed > base_f2p)
                if wanted and not entry["timed_out"] and not p2p:
                    entry["p2p_passed"] = 0  # nothing to break
                elif wanted and not entry["timed_out"]:
                    second, _ = _phase(pytest, root, warm if not why else None, index, "p2p", p2p, timeout_s)
                    status.update(second["status"])
                    entry["p2p_passed"] = _passed(second["status"], p2p)
                    entry["seconds"] += second["seconds"]
                    entry["timed_out"] = bool(second.get("timed_out"))
                entry["status"] = status
                entry["fixed"] = f2p_passed == len(f2p) and (entry["p2p_passed"] or 0) >= len(p2p)
                entry["p2p_ok"] = entry["p2p_passed"] is not None and entry["p2p_passed"] >= base_p2p
            finally:
                for path in files:
                    with open(path, "w", encoding="utf-8") as fh:
                        fh.write(originals[path])
            results.append(entry)
            if entry["fixed"] and job.get("stop_on_fix", True):
                stopped = "fixed"
                break
    finally:
        if warm is not None:
            warm.close()
    return {
        "mode": "validate",
        "results": results,
        "stopped": stopped,
        "fast_path": (warm.why or "on") if warm is not None else "off",
    }


def run_once(pytest, root: str, job: dict) -> dict:
    """The current tree once: statuses, failure tracebacks, and per-test coverage when asked."""
    ids = list(job.get("f2p", [])) + [t for t in job.get("p2p", []) if t not in set(job.get("f2p", []))]
    result = run_forked(
        pytest,
        root,
        ids,
        float(job.get("timeout_s", 120.0)),
        coverage=bool(job.get("coverage")),
        tb=job.get("tb", "long"),
    )
    result.pop("modules", None)
    result["mode"] = "run"
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: launch.py JOB.json RESULT.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        job = json.load(fh)
    root = os.path.realpath(job.get("repo_dir") or os.getcwd())
    os.chdir(root)
    sys.dont_write_bytecode = True
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    sys.pycache_prefix = tempfile.mkdtemp(prefix="hrm-spawn-pyc-")  # never read a stale __pycache__
    for entry in reversed(job.get("pythonpath", ["."])):
        sys.path.insert(0, os.path.join(root, entry))
    pin_rootdir(root)
    import pytest  # warm: every child inherits it

    with contextlib.suppress(Exception):  # and pytest's own plugins, which each session would import
        from _pytest.config import default_plugins

        for name in default_plugins:
            importlib.import_module(f"_pytest.{name}")

    start = time.perf_counter()
    result = run_once(pytest, root, job) if job.get("mode") == "run" else validate(pytest, root, job)
    result["wall_s"] = time.perf_counter() - start
    t = os.times()  # CPU seconds of this process and its reaped children (the per-core cost)
    result["cpu_s"] = t.user + t.system + t.children_user + t.children_system
    tmp = argv[2] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    os.replace(tmp, argv[2])
    return 0
