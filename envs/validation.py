"""Validating candidate bugs for ``tasks build``: real test runs in per-worker sandboxes, a resumable record.

Each worker of the build's pool (:class:`hrm_spawn.envs.executors.LocalExecutor`) owns one local
Sandbox (:mod:`hrm_spawn.envs.sandbox`) on a clean clone of the checkout; per candidate it applies the
patch, runs the full suite, compares with the clean baseline and resets with git (:class:`ValidationRunner`).
A candidate is valid with >= 1 FAIL_TO_PASS and >= 1 PASS_TO_PASS.

Every result goes to a :class:`Sidecar` JSONL next to the output, so a rerun skips work already done.
:class:`Validator` schedules: it keeps the pool full and stops as soon as the first ``limit`` valid
candidates *in order* are known, whatever the workers finish first, so the output depends only on the
order. A validation whose worker died or hung is run once more; a second loss makes an invalid record
with ``failed`` (the kind) and the reason, which counts as invalid in this build and is validated again
by the next run (the sidecar does not keep it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrm_spawn.envs.candidates import Candidate
from hrm_spawn.envs.executors import Executor
from hrm_spawn.envs.problem import failure_messages
from hrm_spawn.envs.progress import progress
from hrm_spawn.envs.repos import RepoEnv
from hrm_spawn.envs.testlog import parse_report, pytest_command

if TYPE_CHECKING:
    from hrm_spawn.envs.sandbox import Sandbox

MAX_MESSAGES = 50
SUMMARY_ARGS = ["--tb=no", "-rfE"]  # short failure lines for the problem statement
WAIT_S = 60.0  # how long one wait for results lasts (the loop only waits; nothing polls)


def validation_timeout(env: RepoEnv) -> float:
    """A test run's limit: generous, so a loaded machine does not turn slow runs into rejects."""
    return max(60.0, 10 * env.test_run_s)


@dataclass(frozen=True)
class ValidationSpec:
    """What each validating worker needs (see :class:`hrm_spawn.envs.executors.WorkerSpec`)."""

    env_data: dict[str, Any]
    base_passed: list[str]
    work_root: str  # each worker notes its clone's folder here, so the build removes what a killed one left
    timeout_s: float

    def build(self) -> ValidationRunner:
        return ValidationRunner(self)

    def failed(self, job: Candidate, kind: str, reason: str, worker: str) -> dict[str, Any]:
        return {
            "key": job.key,
            "base_commit": self.env_data["base_commit"],
            "valid": False,
            "failed": kind,
            "reason": f"{kind}: {reason}"[:2000],
        }

    def job_limit(self, job: Candidate) -> float:
        """Past this the worker is stuck, not slow: the test run ends at ``timeout_s`` (+10 s), and applying,
        diffing and resetting take seconds; three runs' time and two minutes more."""
        return 3 * self.timeout_s + 120.0


class ValidationRunner:
    """One local Sandbox per worker, on a clean clone of the checkout (reset with git, not re-copied)."""

    def __init__(self, spec: ValidationSpec):
        from hrm_spawn.envs.sandbox import Sandbox, SandboxConfig

        self.env = RepoEnv(**spec.env_data)
        self.base_passed = spec.base_passed
        self.timeout_s = spec.timeout_s
        config = SandboxConfig(
            test_timeout_s=spec.timeout_s,
            command_timeout_s=max(60.0, spec.timeout_s),
            repos_dir=str(Path(self.env.root).parent),
        )
        self.sandbox: Sandbox = Sandbox(config)
        with warnings.catch_warnings():
            # The host-execution warning is printed once by the parent (build_tasks), not once per worker.
            warnings.simplefilter("ignore", RuntimeWarning)
            self.sandbox.prepare_clean(self.env.name)
        # The parent removes what a killed worker leaves behind: it reads the clone's folder from here.
        (Path(spec.work_root) / f"w{os.getpid()}").write_text(str(Path(self.sandbox.repo_dir).parent))

    def run(self, cand: Candidate) -> dict[str, Any]:
        """Apply in the sandbox, run the full suite, compare with the clean baseline, reset."""
        from hrm_spawn.envs.sandbox import PatchApplyError

        sandbox = self.sandbox
        record: dict[str, Any] = {"key": cand.key, "base_commit": self.env.base_commit, "valid": False}
        sandbox.reset()
        try:
            for part in cand.parts or [cand.patch]:
                sandbox.apply_patch(part)
            patch = sandbox.diff() if cand.parts else cand.patch
            suite = pytest_command(
                sandbox.python, [*sandbox.test_paths, *SUMMARY_ARGS], sandbox.test_env, self.timeout_s
            )
            result = sandbox.run(
                f"( cd {shlex.quote(sandbox.repo_dir)} && {suite} )", timeout_s=self.timeout_s + 10
            )
        except PatchApplyError as exc:
            record["reason"] = f"does not apply: {str(exc)[:300]}"
            return record
        finally:
            sandbox.reset()
        killed = result.timed_out or result.exit_code == 137
        report = parse_report(result.output, result.duration_s, killed)
        f2p = sorted(t for t in self.base_passed if not report.passed(t))
        p2p = sorted(t for t in self.base_passed if report.passed(t))
        record.update(
            duration_s=round(report.duration_s, 3),
            timed_out=report.timed_out,
            n_f2p=len(f2p),
            n_p2p=len(p2p),
            validated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        if report.timed_out:
            record["reason"] = "test run timed out"
        elif not f2p:
            record["reason"] = "no test fails"
        elif not p2p:
            record["reason"] = "no test keeps passing"
        else:
            messages = failure_messages(result.output)
            record.update(
                valid=True,
                patch=patch,
                FAIL_TO_PASS=f2p,
                PASS_TO_PASS=p2p,
                messages={t: messages.get(t, "") for t in f2p[:MAX_MESSAGES]},
            )
        return record

    def close(self) -> None:
        self.sandbox.close()


def remove_worker_clones(work_root: str) -> None:
    """The clones that workers noted in ``work_root`` (a killed worker cannot remove its own), and the folder."""
    for marker in Path(work_root).glob("w*"):
        shutil.rmtree(marker.read_text().strip(), ignore_errors=True)
    shutil.rmtree(work_root, ignore_errors=True)


class Sidecar:
    """Append-only JSONL of validation results, keyed by candidate hash (resume skips these).

    A record of a validation that lost its worker twice (``failed``) is written for the record but not
    loaded again: the next run validates that candidate again.
    """

    def __init__(self, path: Path, base_commit: str):
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interrupted run: that candidate is validated again
                if not isinstance(rec, dict) or rec.get("base_commit") != base_commit or "key" not in rec:
                    continue
                if rec.get("failed"):
                    self.records.pop(rec["key"], None)
                else:
                    self.records[rec["key"]] = rec
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def add(self, record: dict[str, Any]) -> None:
        self.records[record["key"]] = record
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def selected(
    cands: list[Candidate], records: dict[str, dict[str, Any]], limit: int | None
) -> list[Candidate] | None:
    """The first ``limit`` valid candidates in order, or None while an earlier one is still unknown."""
    chosen = []
    for cand in cands:
        rec = records.get(cand.key)
        if rec is None:
            return None
        if rec["valid"]:
            chosen.append(cand)
            if limit is not None and len(chosen) >= limit:
                return chosen
    return chosen


class Validator:
    """Validates candidates on ``executor`` (whose runners take :class:`Candidate` jobs), into ``sidecar``.

    One validator serves every phase of a build: a validation still running when a phase stops early is
    not stopped; its result is recorded when it ends, while the next phase runs. ``executor`` may be None
    when the sidecar already holds every result needed.
    """

    def __init__(self, executor: Executor | None, sidecar: Sidecar):
        self.executor = executor
        self.sidecar = sidecar
        self.reused = 0  # results taken from the sidecar
        self._running: dict[str, Candidate] = {}  # key -> candidate, on a worker now
        self._lost: set[str] = set()  # keys whose first try lost its worker

    def select(self, cands: list[Candidate], limit: int | None, title: str) -> list[Candidate]:
        """Validate until the first ``limit`` valid candidates (in order) are known; returns them."""
        records = self.sidecar.records
        todo = [c for c in cands if c.key not in records]
        self.reused += len(cands) - len(todo)
        chosen = selected(cands, records, limit)
        if chosen is not None or not todo:
            return chosen or []
        if self.executor is None:
            raise RuntimeError(f"{title}: {len(todo)} candidate(s) to validate and no workers")
        keys = {c.key for c in todo}
        queue = [c for c in todo if c.key not in self._running]
        with progress(title, len(todo), unit="candidate") as bar:
            while chosen is None:
                while queue and len(self._running) < self.executor.capacity:
                    self._submit(queue.pop(0))
                for record in self.executor.wait(WAIT_S):
                    retry = self._record(record)
                    if retry is not None:
                        queue.insert(0, retry)
                    elif record["key"] in keys:
                        bar.update()
                chosen = selected(cands, records, limit)
        return chosen

    def _submit(self, cand: Candidate) -> None:
        assert self.executor is not None
        self.executor.submit(cand)
        self._running[cand.key] = cand

    def _record(self, record: dict[str, Any]) -> Candidate | None:
        """Add a result to the sidecar; returns the candidate to run once more when its worker was lost."""
        cand = self._running.pop(record["key"])
        if record.get("failed") and cand.key not in self._lost:
            self._lost.add(cand.key)
            return cand
        self.sidecar.add(record)
        return None
