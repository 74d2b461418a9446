"""Mutation-based program repair: localise, mutate in the agent's families, validate warm, keep the best.

One run: apply ``start_patch``, run the visible tests once (with per-test coverage), rank suspicious lines,
generate candidates at the top lines, validate them in batches through the fork worker (one sandbox command
per batch), keep the best candidate (most FAIL_TO_PASS fixed without breaking PASS_TO_PASS: a partial fix
is kept, so it can be delegated), and with ``depth > 1`` search again from it (bugs made of several edits).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import random
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrm_spawn.envs.agents.localize import Site, localize
from hrm_spawn.envs.agents.mutate import FAMILIES, Candidate, mutate_sites
from hrm_spawn.envs.failures import InfrastructureError, is_infrastructure_failure
from hrm_spawn.envs.results import AgentResult, Budget, Cost, TestReport

if TYPE_CHECKING:
    from hrm_spawn.envs.sandbox import Sandbox
    from hrm_spawn.envs.tasks import TaskInstance

SCRATCH = ".hrm-agent"  # inside the repository (the sandbox's file API is repository-relative); removed after
# The validator package (envs/agents/validator/) under a name no repository uses: its modules stay in
# sys.modules while the repository's code runs, so a plain name ("validator") could shadow the repository's.
VALIDATOR = f"{SCRATCH}/hrm_spawn_validator"


@functools.cache
def validator_files() -> dict[str, str]:
    """Every file of the validator, by path relative to the repository: what goes into the sandbox."""
    folder = Path(__file__).parent / "validator"
    return {f"{VALIDATOR}/{f.name}": f.read_text(encoding="utf-8") for f in sorted(folder.glob("*.py"))}


MAX_RANKED = 400  # suspicious lines handed to the mutators (each file is parsed once, whatever the count)
NEARBY_P2P = 24  # passing tests traced for the coverage spectrum on a clean repository


def _nearby(f2p: list[str], p2p: list[str], cap: int = NEARBY_P2P) -> list[str]:
    """PASS_TO_PASS tests in the failing tests' files (else the first ones), at most ``cap``."""
    files = {t.split("::")[0] for t in f2p}
    near = [t for t in p2p if t.split("::")[0] in files]
    return (near or p2p)[:cap]


DEFAULT_VALIDATIONS = 100  # the count budget when a Budget gives none
DEFAULT_SAFETY_S = 600.0  # the wall-clock safety limit when a Budget gives none
# The safety limit is at least this many seconds per validation of the count budget: a loaded 2-core
# machine took up to 7 s per candidate on tinydb tasks with 150 failing tests (1 s idle).
SAFETY_S_PER_VALIDATION = 10.0


class AgentTimeout(RuntimeError):
    """A sandbox command ran past its limit."""


class SafetyLimitError(InfrastructureError):
    """The run passed its wall-clock safety limit before its count budget was spent.

    The agent stops on counts (validations), which do not depend on how busy the machine is; wall time
    is only a safety net set well above what the counts need. Hitting it means the machine was too slow
    for the budget, which says nothing about the agent: the run is not stored, and a resume retries it.
    """

    kind = "safety_limit"


@dataclass
class _Best:
    """The best candidate so far: the full texts of the files it changes (beyond start_patch)."""

    files: dict[str, str]
    f2p_passed: int
    p2p_passed: int
    edits: list[str] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)  # per-test outcomes of the best candidate

    def better(self, f2p: int, p2p: int) -> bool:
        return p2p >= self.p2p_passed and f2p > self.f2p_passed


class _Session:
    """Sandbox calls with their wall time counted as cost."""

    def __init__(self, sandbox: Sandbox, cost: Cost):
        self.sandbox, self.cost = sandbox, cost

    def _timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.cost.sandbox_s += time.perf_counter() - start

    def read(self, path: str) -> str:
        return self._timed(self.sandbox.read_file, path)

    def write(self, path: str, text: str) -> None:
        self._timed(self.sandbox.write_file, path, text)

    def run(self, command: str, timeout_s: float) -> Any:
        result = self._timed(self.sandbox.run, command, timeout_s=timeout_s)
        if result.timed_out:
            raise AgentTimeout(f"sandbox command timed out after {timeout_s:.0f}s: {command[:120]}")
        return result

    def ship_validator(self) -> None:
        """Copy the validator into the sandbox (``validator_files``), for ``worker`` to run."""
        for path, text in validator_files().items():
            self.write(path, text)

    def worker(self, job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """One worker command: job in, result out, through files in the scratch folder."""
        self.write(f"{SCRATCH}/job.json", json.dumps(job))
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in self.sandbox.test_env.items())
        command = (
            f"cd {shlex.quote(self.sandbox.repo_dir)} && rm -f {SCRATCH}/result.json && "
            f"timeout -s KILL {max(1, round(timeout_s))} env {env} {shlex.quote(self.sandbox.python)} "
            f"{VALIDATOR}/launch.py {SCRATCH}/job.json {SCRATCH}/result.json"
        )
        result = self.run(command, timeout_s + 10)
        try:
            return json.loads(self.read(f"{SCRATCH}/result.json"))
        except Exception as exc:  # no result file: the worker itself crashed
            raise RuntimeError(f"validator failed (exit {result.exit_code}): {result.output[-800:]}") from exc


def _tiers(
    cands: list[Candidate], score: dict[tuple[str, int], float], rng: random.Random
) -> list[Candidate]:
    """Seeded shuffle within each suspiciousness tier, tiers kept in order."""
    groups: dict[float, list[Candidate]] = {}
    for cand in cands:
        groups.setdefault(round(score.get((cand.file, cand.line), 0.0), 3), []).append(cand)
    out: list[Candidate] = []
    for tier in sorted(groups, reverse=True):
        group = groups[tier]
        rng.shuffle(group)
        out += group
    return out


def _line_edits(source: str, text: str) -> list[tuple[int, int, list[str]]]:
    a, b = source.splitlines(keepends=True), text.splitlines(keepends=True)
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return [(i1, i2, b[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]


def merge_edits(source: str, first: str, second: str) -> str | None:
    """Both candidates' changes to one file together, or None when they touch the same lines."""
    edits = sorted(_line_edits(source, first) + _line_edits(source, second))
    for (a1, a2, _), (b1, _b2, _) in zip(edits, edits[1:], strict=False):
        if b1 < a2 or b1 == a1:  # overlapping, or two insertions at one place
            return None
    lines = source.splitlines(keepends=True)
    for i1, i2, new in reversed(edits):
        lines[i1:i2] = new
    return "".join(lines)


class RepairAgent:
    """Program repair by mutation in the given families; see the module docstring."""

    # 2: the first visible run on a clean repository runs only the nearby PASS_TO_PASS tests
    # 3: max_lines counts only lines where the agent's families have an edit
    # 4: only those lines' edits are rendered (3 rendered every ranked line's: minutes for reorderings)
    version = "4"

    def __init__(
        self,
        families: Sequence[str] = FAMILIES,
        max_lines: int = 12,
        batch_size: int = 16,
        depth: int = 1,
        pair_pool: int = 0,
        candidate_timeout_s: float = 20.0,
        test_timeout_s: float = 300.0,
        name: str = "repair",
        safety_s_per_validation: float = SAFETY_S_PER_VALIDATION,
    ):
        unknown = set(families) - set(FAMILIES)
        if unknown or not families:
            raise ValueError(
                f"RepairAgent families {sorted(unknown) or '[]'} invalid; known: {', '.join(FAMILIES)}"
            )
        if max_lines < 1 or batch_size < 1 or depth < 1 or pair_pool < 0:
            raise ValueError("RepairAgent needs max_lines, batch_size, depth >= 1 and pair_pool >= 0")
        self.families, self.max_lines, self.batch_size = list(families), max_lines, batch_size
        self.depth, self.pair_pool, self.candidate_timeout_s, self.name = (
            depth,
            pair_pool,
            candidate_timeout_s,
            name,
        )
        self.test_timeout_s = test_timeout_s
        self.safety_s_per_validation = safety_s_per_validation

    # -- the run ---------------------------------------------------------------------------------
    def run(
        self, sandbox: Sandbox, task: TaskInstance, start_patch: str, budget: Budget, seed: int
    ) -> AgentResult:
        cost, log = Cost(), []
        session = _Session(sandbox, cost)
        result = AgentResult(
            patch="", status="ok", cost=cost, agent=self.name, version=self.version, seed=seed
        )
        applied = False
        try:
            if start_patch.strip():
                session._timed(sandbox.apply_patch, start_patch)
                log.append("applied start_patch")
            applied = True
            session.ship_validator()
            status, reason, report, rate = self._search(
                session, task, budget, seed, log, clean=not start_patch.strip()
            )
            result.status, result.reason, result.visible, result.visible_pass_rate = (
                status,
                reason,
                report,
                rate,
            )
            self._cleanup(session)
            result.patch = session._timed(sandbox.diff)
        except (
            Exception
        ) as exc:  # crash, hang or a patch that does not apply: report it, leave the sandbox usable
            result.status = "timeout" if isinstance(exc, AgentTimeout) else "error"
            result.reason = f"{type(exc).__name__}: {exc}"[:1000]
            log.append(f"{result.status}: {result.reason[:200]}")
            result.patch = start_patch if applied else ""
            self._recover(session)
            if is_infrastructure_failure(exc):
                raise  # not the agent's outcome (failures.py): never stored
        result.trajectory = log
        return result

    def _cleanup(self, session: _Session) -> None:
        session.run(f"cd {shlex.quote(session.sandbox.repo_dir)} && rm -rf {SCRATCH}", 30)

    def _recover(self, session: _Session) -> None:
        with contextlib.suppress(Exception):  # the caller sees the error status; a dead sandbox is theirs
            session._timed(session.sandbox.reset)

    def _search(
        self,
        session: _Session,
        task: TaskInstance,
        budget: Budget,
        seed: int,
        log: list[str],
        clean: bool = True,
    ):
        f2p, p2p = list(task.FAIL_TO_PASS), list(task.PASS_TO_PASS)
        rng = random.Random(seed)
        # Counts decide when to stop (reproducible on any machine); wall time is only a safety limit.
        count = budget.max_validations or DEFAULT_VALIDATIONS
        safety = max(budget.max_sandbox_s or DEFAULT_SAFETY_S, self.safety_s_per_validation * count)
        budget = Budget(**{**budget.to_dict(), "max_validations": count, "max_sandbox_s": safety})
        deadline = time.perf_counter() + budget.max_sandbox_s
        base = self._observe(session, f2p, p2p, deadline, visible_p2p=_nearby(f2p, p2p) if clean else None)
        best = _Best({}, base["f2p"], base["p2p"])
        report = TestReport(status=base["status"], duration_s=base["seconds"])
        log.append(f"visible: F2P {best.f2p_passed}/{len(f2p)}, P2P {best.p2p_passed}/{len(p2p)}")
        status, reason = "ok", ""
        tried: set[tuple[str, str]] = set()  # (file, text) of every candidate validated
        for round_no in range(self.depth):
            if best.f2p_passed == len(f2p):
                break
            sites = localize(
                base["failures"],
                session.sandbox.repo_dir,
                base.get("coverage"),
                base["failed"],
                read=session.read,
            )[:MAX_RANKED]
            if not sites:
                log.append("no repository line to blame")
                break
            cands = self._candidates(session, sites, best, rng, base)
            lines = list(dict.fromkeys(f"{c.file}:{c.line}" for c in cands))
            log.append(f"round {round_no + 1}: {len(cands)} candidates at " + ", ".join(lines[:5]))
            found, exhausted = self._validate(session, cands, best, f2p, p2p, budget, deadline, tried, log)
            if exhausted:
                status, reason = "budget_exhausted", exhausted
                break
            if not found and self.pair_pool:
                pairs = self._pairs(session, cands, best)
                log.append(f"no single edit helps: {len(pairs)} pairs")
                found, exhausted = self._validate(
                    session, pairs, best, f2p, p2p, budget, deadline, tried, log
                )
                if exhausted:
                    status, reason = "budget_exhausted", exhausted
                    break
            if not found:
                break
            if best.f2p_passed < len(f2p) and round_no + 1 < self.depth:
                for path, text in best.files.items():
                    session.write(path, text)  # continue from the best candidate
                base = self._observe(session, f2p, p2p, deadline)
        for path, text in best.files.items():
            session.write(path, text)
        if best.files:
            log.append("best: " + "; ".join(best.edits))
        log.append(f"result: F2P {best.f2p_passed}/{len(f2p)}, P2P {best.p2p_passed}/{len(p2p)}")
        rate = (best.f2p_passed / len(f2p) if f2p else 1.0) * (best.p2p_passed / len(p2p) if p2p else 1.0)
        report.status.update(best.status)  # the visible outcomes of the candidate we return
        return status, reason, report, rate

    def _observe(
        self,
        session: _Session,
        f2p: list[str],
        p2p: list[str],
        deadline: float,
        visible_p2p: list[str] | None = None,
    ) -> dict[str, Any]:
        """Run the visible tests once on the current tree, with tracebacks and per-test coverage.

        On the clean buggy repository every PASS_TO_PASS test passes by the task's definition, so only
        ``visible_p2p`` (the passing tests near the failing ones, for the coverage spectrum) are run and
        the rest are counted as passing: the traced full suite was most of a failed run's cost.
        """
        timeout = min(self.test_timeout_s, max(5.0, deadline - time.perf_counter()))
        run_p2p = p2p if visible_p2p is None else visible_p2p
        job = {
            "mode": "run",
            "f2p": f2p,
            "p2p": run_p2p,
            "coverage": True,
            "tb": "long",
            "timeout_s": timeout,
        }
        out = session.worker(job, timeout + 5)
        session.cost.test_runs += 1
        if out.get("timed_out"):
            if timeout < self.test_timeout_s:  # cut short by the safety limit, not by its own timeout
                raise SafetyLimitError(
                    f"the visible test run passed the wall-clock safety limit ({timeout:.0f}s left)"
                )
            raise AgentTimeout(f"the visible test run timed out after {timeout:.0f}s")
        status = out.get("status", {})
        ok = {t for t, s in status.items() if s in ("PASSED", "XFAIL")}
        return {
            "status": status,
            "failures": out.get("failures", {}),
            "coverage": out.get("coverage", {}),
            "failed": {t for t in status if t not in ok} | {t for t in f2p if t not in ok},
            "f2p": sum(t in ok for t in f2p),
            "p2p": sum(t in ok for t in run_p2p) + len(p2p) - len(run_p2p),
            "seconds": out.get("seconds", 0.0),
        }

    def _candidates(
        self,
        session: _Session,
        sites: list[Site],
        best: _Best,
        rng: random.Random,
        observed: dict[str, Any] | None = None,
    ) -> list[Candidate]:
        """Edits at the ``max_lines`` most suspicious lines where this agent's families have an edit.

        Counting only lines with an edit matters: a constant-changing agent whose top lines hold no
        constant would otherwise try nothing at all while the faulty constant sits a few lines lower.
        ``observed`` is the visible run the sites came from (failure texts, coverage), for subclasses.
        """
        score = {(s.file, s.line): s.score for s in sites}
        cands = mutate_sites(session.read, [(s.file, s.line) for s in sites], self.families, self.max_lines)
        return _tiers(cands, score, rng)

    def _pairs(self, session: _Session, cands: list[Candidate], best: _Best) -> list[Candidate]:
        pool = cands[: self.pair_pool]
        out = []
        for i, a in enumerate(pool):
            for b in pool[i + 1 :]:
                if a.file != b.file:
                    continue
                merged = merge_edits(session.read(a.file), a.text, b.text)
                if merged is not None:
                    out.append(
                        Candidate(a.file, merged, f"{a.description} + {b.description}", a.line, a.family)
                    )
        return out

    def _validate(
        self,
        session: _Session,
        cands: list[Candidate],
        best: _Best,
        f2p: list[str],
        p2p: list[str],
        budget: Budget,
        deadline: float,
        tried: set[tuple[str, str]],
        log: list[str],
    ) -> tuple[bool, str]:
        """Validate in batches; update ``best``. Returns (improved, why the count budget stopped us or '').

        Raises SafetyLimitError when the wall-clock safety limit passes first.
        """
        todo = [c for c in cands if (c.file, c.text) not in tried]
        found = False
        while todo:
            left_val = (
                (budget.max_validations - session.cost.validations) if budget.max_validations else len(todo)
            )
            left_s = deadline - time.perf_counter()
            if left_val <= 0:
                return found, f"budget spent with {len(todo)} candidates left"
            if left_s <= 0:
                raise SafetyLimitError(self._safety_reason(session, budget))
            batch, todo = todo[: min(self.batch_size, left_val)], todo[min(self.batch_size, left_val) :]
            job = {
                "mode": "validate",
                "f2p": f2p,
                "p2p": p2p,
                "stop_on_fix": True,
                "p2p_mode": "improved",
                "baseline": {"f2p": best.f2p_passed, "p2p": best.p2p_passed},
                "timeout_s": self.candidate_timeout_s,
                "deadline_s": max(1.0, left_s),
                "candidates": [{"id": str(i), "files": {c.file: c.text}} for i, c in enumerate(batch)],
            }
            out = session.worker(job, min(left_s, 600.0) + len(batch) * self.candidate_timeout_s)
            for entry in out.get("results", []):
                cand = batch[int(entry["id"])]
                tried.add((cand.file, cand.text))
                session.cost.validations += 1
                session.cost.test_runs += 1 + (entry.get("p2p_passed") is not None)
                p2p_passed = entry.get("p2p_passed")
                if (
                    p2p_passed is not None
                    and entry.get("p2p_ok")
                    and best.better(entry["f2p_passed"], p2p_passed)
                ):
                    best.files = {**best.files, cand.file: cand.text}
                    best.f2p_passed, best.p2p_passed = entry["f2p_passed"], p2p_passed
                    best.edits = [*best.edits, cand.description]
                    best.status = entry.get("status", {})
                    found = True
            log.append(
                f"validated {len(out.get('results', []))} in {out.get('wall_s', 0):.1f}s: "
                f"best F2P {best.f2p_passed}/{len(f2p)}"
            )
            if best.f2p_passed == len(f2p) and best.p2p_passed >= len(p2p):
                return True, ""
            if out.get("stopped") == "deadline":
                raise SafetyLimitError(self._safety_reason(session, budget))
        return found, ""

    @staticmethod
    def _safety_reason(session: _Session, budget: Budget) -> str:
        return (
            f"wall-clock safety limit of {budget.max_sandbox_s:.0f}s passed after "
            f"{session.cost.validations}/{budget.max_validations} validations: the machine was too slow "
            "for this budget (not an outcome; raise max_sandbox_s or lower max_validations)"
        )
