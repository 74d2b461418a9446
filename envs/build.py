"""``hrm-spawn tasks build``: a repository -> SWE-smith procedural bugs -> validated task JSONL.

Steps: prepare the RepoEnv (:mod:`hrm_spawn.envs.build_repo`); run its clean baseline; start one pool of
worker processes (:class:`hrm_spawn.envs.executors.LocalExecutor`), each with one local Sandbox on a
clean clone; on it, generate candidates with SWE-smith's 13 Python modifiers (:mod:`hrm_spawn.envs.candidates`)
and validate them by running the full suite against the baseline (:mod:`hrm_spawn.envs.validation`);
keep >= 1 FAIL_TO_PASS and >= 1 PASS_TO_PASS; then combine 2-3 valid bugs of one file (or module) and
validate the combination on the same pool.

Every validation result goes to a sidecar JSONL next to the output, so a rerun skips work already done.
The output depends only on the source and the seed: candidates come in a seeded order and the first
``max_bugs`` valid ones in that order are kept, whatever the workers finish first.

The workers are forked where the platform can (they inherit the parent's imports and entities), else
spawned: there a script that calls :func:`build_tasks` at its top level needs the usual
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hrm_spawn.envs.build_repo import baseline, prepare_repo
from hrm_spawn.envs.candidates import (
    DEFAULT_VARIANTS,
    Candidate,
    GenerationRunner,
    GenerationSpec,
    KindJob,
    KindResult,
    check_kinds,
    combined_candidates,
    entities_cached,
    generate_candidates,
    invertible,
)
from hrm_spawn.envs.executors import LocalExecutor, fork_if_possible
from hrm_spawn.envs.problem import problem_statement
from hrm_spawn.envs.repos import RepoEnv
from hrm_spawn.envs.validation import (
    Sidecar,
    ValidationRunner,
    ValidationSpec,
    Validator,
    remove_worker_clones,
    validation_timeout,
)

DEFAULT_COMBINED = 40


@dataclass
class BuildReport:
    source: str
    repo: str
    out: str
    seed: int
    workers: int
    entities: int = 0
    candidates: dict[str, int] = field(default_factory=dict)  # per kind (combinations by combine kind)
    validated: dict[str, int] = field(default_factory=dict)  # how many were run (or reused)
    valid: dict[str, int] = field(default_factory=dict)  # valid ones (before the max_bugs cut)
    kept: dict[str, int] = field(default_factory=dict)  # in the output file
    single_tasks: int = 0
    combined_tasks: int = 0
    combined_invertible: int = 0  # combined tasks made only of kinds the mutation agents can undo
    reused: int = 0  # results taken from the sidecar
    timeouts: int = 0
    prepare_s: float = 0.0
    generate_s: float = 0.0
    validate_s: float = 0.0
    total_s: float = 0.0
    test_run_s: float = 0.0

    @property
    def tasks(self) -> int:
        return self.single_tasks + self.combined_tasks

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tasks": self.tasks}

    def table(self) -> str:
        kinds = sorted(set(self.candidates) | set(self.valid))
        rows = [f"{'kind':32} {'candidates':>10} {'validated':>9} {'valid':>6} {'kept':>5}"]
        for kind in kinds:
            rows.append(
                f"{kind:32} {self.candidates.get(kind, 0):>10} {self.validated.get(kind, 0):>9} "
                f"{self.valid.get(kind, 0):>6} {self.kept.get(kind, 0):>5}"
            )
        rows.append(
            f"{self.tasks} tasks ({self.single_tasks} single, {self.combined_tasks} combined, "
            f"{self.combined_invertible} of them invertible) -> {self.out}; "
            f"{self.total_s:.0f} s total (prepare {self.prepare_s:.0f}, generate {self.generate_s:.0f}, "
            f"validate {self.validate_s:.0f}) on {self.workers} workers; {self.reused} reused"
        )
        return "\n".join(rows)


@dataclass(frozen=True)
class BuildWorkerSpec:
    """A worker of the build's one pool: it generates (:class:`KindJob`) and validates (:class:`Candidate`)."""

    generation: GenerationSpec
    validation: ValidationSpec

    def build(self) -> BuildWorker:
        return BuildWorker(self.generation.build(), self.validation.build())

    def failed(self, job: Any, kind: str, reason: str, worker: str) -> Any:
        part = self.generation if isinstance(job, KindJob) else self.validation
        return part.failed(job, kind, reason, worker)

    def job_limit(self, job: Any) -> float | None:
        part = self.generation if isinstance(job, KindJob) else self.validation
        return part.job_limit(job)


class BuildWorker:
    def __init__(self, generation: GenerationRunner, validation: ValidationRunner):
        self.generation, self.validation = generation, validation

    def run(self, job: KindJob | Candidate) -> KindResult | dict[str, Any]:
        if isinstance(job, KindJob):
            return self.generation.run(job)
        return self.validation.run(job)

    def close(self) -> None:
        self.generation.close()
        self.validation.close()


def _task(env: RepoEnv, cand: Candidate, rec: dict[str, Any], total_tests: int) -> Any:
    from hrm_spawn.envs.tasks import TaskInstance

    return TaskInstance(
        instance_id=f"{env.name}.{cand.label}__{cand.key[:8]}",
        repo=env.name,
        patch=rec["patch"],
        FAIL_TO_PASS=rec["FAIL_TO_PASS"],
        PASS_TO_PASS=rec["PASS_TO_PASS"],
        image_name="",
        problem_statement=problem_statement(rec["FAIL_TO_PASS"], rec.get("messages", {}), total_tests),
        base_commit=env.base_commit,
        created_at=rec.get("validated_at"),
        modifier_kinds=cand.kinds,
        entity=",".join(cand.entities),  # a combined bug ties all its functions to one side of the split
        test_run_s=env.test_run_s,
    )


def _combine(
    singles: list[Candidate], count: int, seed: int, validator: Validator, report: BuildReport
) -> tuple[list[Candidate], list[Candidate]]:
    """(candidates tried, combined bugs kept): first up to half of ``count`` (rounded up) made only of
    invertible kinds, so delegation between mutation agents can fix them edit by edit; then the rest
    from every kept single bug, as before. Both orders are seeded, so the result depends on the seed only."""
    if not count:
        return [], []
    want_inv = (count + 1) // 2
    inv = combined_candidates([c for c in singles if invertible(c)], want_inv, seed, "combined-invertible")
    kept_inv = validator.select(inv, want_inv, "combined bugs (invertible)")
    report.combined_invertible = len(kept_inv)
    left = count - len(kept_inv)
    tried = {c.key for c in inv}
    rest = [c for c in combined_candidates(singles, left, seed) if c.key not in tried] if left else []
    kept_rest = validator.select(rest, left, "combined bugs") if left else []
    combos = inv + rest
    for cand in combos:
        report.candidates[cand.label] = report.candidates.get(cand.label, 0) + 1
    return combos, kept_inv + kept_rest


def _with_patch(cands: list[Candidate], records: dict[str, dict[str, Any]]) -> list[Candidate]:
    return [dataclasses.replace(c, patch=records[c.key]["patch"]) for c in cands]


def build_tasks(
    source: str | RepoEnv,
    out: str | Path,
    max_bugs: int | None = None,
    combined: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    variants: int = DEFAULT_VARIANTS,
    kinds: list[str] | None = None,
) -> BuildReport:
    """Build validated tasks from ``source`` into ``out`` (JSONL); see the module docstring."""
    from hrm_spawn.envs.tasks import save_tasks

    if max_bugs is not None and max_bugs < 1:
        raise ValueError(f"max_bugs must be >= 1, got {max_bugs}")
    if combined is not None and combined < 0:
        raise ValueError(f"combined must be >= 0, got {combined}")
    if kinds:
        kinds = check_kinds(kinds)  # a typo fails before the repository is prepared
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    start = time.perf_counter()
    out = Path(out)
    env = source if isinstance(source, RepoEnv) else prepare_repo(source)
    report = BuildReport(
        source=env.source, repo=env.name, out=str(out), seed=seed, workers=workers, test_run_s=env.test_run_s
    )
    report.prepare_s = round(time.perf_counter() - start, 2)

    print(
        f"validating with {workers} local sandbox(es): the repository's code and tests run on this host",
        file=sys.stderr,
    )
    clean = baseline(env)
    base_passed = sorted(t for t in clean.status if clean.passed(t))
    sidecar = Sidecar(out.with_name(out.name + ".validation.jsonl"), env.base_commit)
    work_root = tempfile.mkdtemp(prefix="work-", dir=env.root)
    spec = BuildWorkerSpec(
        GenerationSpec(asdict(env)),
        ValidationSpec(asdict(env), base_passed, work_root, validation_timeout(env)),
    )
    mark = time.perf_counter()
    report.entities = len(entities_cached(env))  # here, before the fork: every worker inherits them
    import hrm_spawn.envs.sandbox  # noqa: F401  (likewise: imported once, here, not in each worker)

    try:
        # one pool for the whole build: its start-up (a clean clone per worker) is paid once
        with LocalExecutor(workers, spec, fork_if_possible()) as pool:
            singles, _ = generate_candidates(env, seed, variants, kinds=kinds, executor=pool)
            report.generate_s = round(time.perf_counter() - mark, 2)
            report.candidates = dict(Counter(c.label for c in singles))
            mark = time.perf_counter()
            validator = Validator(pool, sidecar)
            kept_singles = _with_patch(validator.select(singles, max_bugs, "single bugs"), sidecar.records)
            n_combined = DEFAULT_COMBINED if combined is None else combined
            combos, kept_combos = _combine(kept_singles, n_combined, seed, validator, report)
            report.reused = validator.reused
    finally:
        sidecar.close()
        remove_worker_clones(work_root)
    report.validate_s = round(time.perf_counter() - mark, 2)

    records = sidecar.records
    for cand in singles + combos:
        rec = records.get(cand.key)
        if rec is not None:
            report.validated[cand.label] = report.validated.get(cand.label, 0) + 1
            report.valid[cand.label] = report.valid.get(cand.label, 0) + int(rec["valid"])
            report.timeouts += int(bool(rec.get("timed_out")))
    kept = kept_singles + kept_combos
    report.kept = dict(Counter(c.label for c in kept))
    report.single_tasks, report.combined_tasks = len(kept_singles), len(kept_combos)
    save_tasks([_task(env, c, records[c.key], len(base_passed)) for c in kept], out)
    report.total_s = round(time.perf_counter() - start, 2)
    out.with_name(out.name + ".report.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report


def cli_build(args: argparse.Namespace) -> int:
    """``hrm-spawn tasks build --repo SOURCE --out FILE [--max-bugs N] [--combined N] [--seed S] [--workers W]
    [--kinds K ...]``."""
    try:
        report = build_tasks(
            args.repo,
            args.out,
            max_bugs=args.max_bugs,
            combined=args.combined,
            seed=args.seed,
            workers=args.workers,
            kinds=getattr(args, "kinds", None),
        )
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"hrm-spawn tasks build: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    print(f"report: {args.out}.report.json")
    return 0 if report.tasks else 1
