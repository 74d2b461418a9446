"""``hrm-spawn tasks build``: a repository -> SWE-smith procedural bugs -> validated task JSONL.

Steps: prepare the RepoEnv (hrm_spawn.envs.build_repo); register a SWE-smith profile for the local copy; extract
entities, sorted; run fresh instances of SWE-smith's 13 Python modifiers (a few seeded passes each, since
every modifier is random); validate each candidate patch by running the full suite in a per-worker local
Sandbox (hrm_spawn.envs.sandbox: apply, run, reset with git) against the clean baseline; keep >= 1 FAIL_TO_PASS and
>= 1 PASS_TO_PASS; then combine 2-3 valid bugs of one file (or module) and validate the combination.

Every validation result goes to a sidecar JSONL next to the output, so a rerun skips work already done.
The output depends only on the source and the seed: candidates come in a seeded order and the first
``max_bugs`` valid ones in that order are kept, whatever the workers finish first.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hrm_spawn.envs.build_repo import baseline, prepare_repo
from hrm_spawn.envs.problem import failure_messages, problem_statement
from hrm_spawn.envs.progress import progress
from hrm_spawn.envs.repos import RepoEnv
from hrm_spawn.envs.tasks import INVERTIBLE_KINDS
from hrm_spawn.envs.testlog import parse_report, pytest_command

DEFAULT_COMBINED = 40
DEFAULT_VARIANTS = 6  # seeded passes per modifier: each pass draws new random choices
COMBINED_TRIES_PER_TASK = 3
MAX_MESSAGES = 50
SUMMARY_ARGS = ["--tb=no", "-rfE"]  # short failure lines for the problem statement
ENTITY_EXCLUDE_DIRS = {"docs", "doc", "examples", "example", "benchmarks", "scripts", "tests", "test"}
ENTITY_EXCLUDE_FILES = {"setup.py", "conftest.py", "noxfile.py", "conf.py"}


@dataclass
class Candidate:
    """One bug to validate: a single modifier edit, or a combination of valid single edits."""

    key: str  # content hash: of the patch, or of the parts' keys
    kinds: list[str]
    entity: str  # "path::Qualified.name" (the first part's for a combination; see ``entities``)
    file: str
    patch: str = ""  # singles: the diff; combinations: filled in by validation
    parts: list[str] = field(default_factory=list)  # combinations: the single patches, applied in order
    entities: list[str] = field(default_factory=list)
    combine: str = ""  # "", "combine_file" or "combine_module"

    @property
    def label(self) -> str:
        return self.combine or self.kinds[0]


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


# ---------------------------------------------------------------- swesmith profile and candidates


def register_profile(env: RepoEnv) -> Any:
    """A SWE-smith PythonProfile for the local checkout: no GitHub clone, no mirror check."""
    from hrm_spawn.envs import swesmith_py

    swesmith_py.python_modifiers()  # makes swesmith's Python adapter importable (see hrm_spawn.envs.swesmith_py)
    from swesmith.profiles.base import registry
    from swesmith.profiles.python import PythonProfile

    owner, _, repo = env.name.partition("__")
    checkout = str(env.checkout)

    def clone(self: Any, dest: str | None = None) -> tuple[str, bool]:
        return checkout, False  # already here; False: the caller must not delete it

    def _mirror_exists(self: Any) -> bool:
        return True

    def _is_test_path(self: Any, root: str, file: str) -> bool:
        # Judge the path inside the checkout: the data dir itself may sit under a folder named "tests".
        rel = os.path.relpath(root, checkout)
        return PythonProfile._is_test_path(self, "" if rel == "." else rel, file)

    cls_name = "Local_" + "".join(c if c.isalnum() else "_" for c in env.name)
    cls = dataclasses.make_dataclass(
        cls_name,
        [
            ("owner", str, field(default=owner)),
            ("repo", str, field(default=repo or owner)),
            ("commit", str, field(default=env.base_commit or "0" * 40)),
        ],
        bases=(PythonProfile,),
        namespace={"clone": clone, "_mirror_exists": _mirror_exists, "_is_test_path": _is_test_path},
    )
    registry.register_profile(cls)
    return registry.get(cls().repo_name)


def _qualnames(path: Path) -> dict[tuple[int, str], str]:
    """(line, name) -> dotted qualified name for every class and function of a file."""
    import ast

    names: dict[tuple[int, str], str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = f"{prefix}{child.name}"
                names[(child.lineno, child.name)] = qual
                visit(child, qual + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return names


def _keep_file(env: RepoEnv, rel: str) -> bool:
    parts = Path(rel).parts
    if Path(rel).name in ENTITY_EXCLUDE_FILES or any(p in ENTITY_EXCLUDE_DIRS for p in parts[:-1]):
        return False
    roots = [p for p in env.pythonpath if p not in (".", "")]
    return not roots or any(rel.startswith(r.rstrip("/") + "/") for r in roots)


def extract_entities(env: RepoEnv) -> list[tuple[str, Any]]:
    """(``path::qualname``, entity) pairs, sorted by (path, line, name) for seeded sampling."""
    profile = register_profile(env)
    found = []
    qual_cache: dict[str, dict[tuple[int, str], str]] = {}
    for ent in profile.extract_entities():
        rel = os.path.relpath(ent.file_path, env.checkout)
        if not _keep_file(env, rel):
            continue
        if rel not in qual_cache:
            qual_cache[rel] = _qualnames(Path(ent.file_path))
        qual = qual_cache[rel].get((ent.line_start, ent.name), ent.name)
        found.append((rel, ent.line_start, ent.name, f"{rel}::{qual}", ent))
    found.sort(key=lambda row: row[:3])
    return [(row[3], row[4]) for row in found]


def _seed_for(seed: int, label: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{label}".encode()).digest()[:8], "big")


def patch_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


_ENTITIES: dict[str, list[tuple[str, Any]]] = {}


def _entities_cached(env: RepoEnv) -> list[tuple[str, Any]]:
    key = f"{env.root}@{env.base_commit}"
    if key not in _ENTITIES:
        _ENTITIES[key] = extract_entities(env)
    return _ENTITIES[key]


def kind_candidates(env: RepoEnv, kind: str, seed: int, variants: int) -> list[Candidate]:
    """The distinct candidates of one modifier kind, from a fresh modifier seeded by (seed, kind)."""
    from hrm_spawn.envs.swesmith_py import patch_for, python_modifiers

    shared = next(m for m in python_modifiers() if m.name == kind)
    # A fresh instance per build: the shared one carries random state from earlier use.
    modifier = type(shared)(likelihood=shared.likelihood, seed=_seed_for(seed, kind))
    eligible = [(name, ent) for name, ent in _entities_cached(env) if modifier.can_change(ent)]
    found: dict[str, Candidate] = {}
    for _ in range(variants):
        before = len(found)
        for name, ent in eligible:
            rewrite = modifier.modify(ent)
            patch = patch_for(ent, rewrite, str(env.checkout)) if rewrite else None
            if patch and patch_key(patch) not in found:
                file = name.split("::", 1)[0]
                found[patch_key(patch)] = Candidate(
                    patch_key(patch), [kind], name, file, patch, entities=[name]
                )
        if len(found) == before:
            break  # this modifier has nothing new to offer
    return list(found.values())


def _kind_job(job: tuple[dict[str, Any], str, int, int]) -> list[Candidate]:
    env_data, kind, seed, variants = job
    return kind_candidates(RepoEnv(**env_data), kind, seed, variants)


def generate_candidates(
    env: RepoEnv,
    seed: int,
    variants: int = DEFAULT_VARIANTS,
    workers: int = 1,
    kinds: list[str] | None = None,
) -> tuple[list[Candidate], int]:
    """Every distinct single-edit candidate, in a seeded order that interleaves the kinds; and #entities.

    Kinds are independent (each has its own seeded modifier), so they are generated in parallel; ``kinds``
    keeps only those modifiers (each kind's candidates are the same as in a build of every kind).
    """
    kinds = check_kinds(kinds) if kinds else sorted(iter_kinds())
    n_entities = len(_entities_cached(env))
    jobs = [(asdict(env), kind, seed, variants) for kind in kinds]
    if workers > 1:
        with _pool(min(workers, len(jobs))) as pool:
            results = pool.map(_kind_job, jobs, chunksize=1)
    else:
        results = [_kind_job(job) for job in jobs]
    rng = random.Random(_seed_for(seed, "order"))
    queues, seen = [], set()
    for found in results:
        # The same edit reached by two kinds is validated once, under the first kind (sorted by name).
        queue = [c for c in found if c.key not in seen]
        seen.update(c.key for c in queue)
        rng.shuffle(queue)
        queues.append(queue)
    ordered = [q[i] for i in range(max((len(q) for q in queues), default=0)) for q in queues if i < len(q)]
    return ordered, n_entities


def check_kinds(kinds: list[str]) -> list[str]:
    """The given modifier names, sorted; a short name (``remove_assign``) stands for ``func_pm_remove_assign``."""
    known = sorted(iter_kinds())
    out = []
    for kind in kinds:
        full = kind if kind in known else f"func_pm_{kind}"
        if full not in known:
            raise ValueError(f"unknown modifier kind {kind!r}; known: {', '.join(known)}")
        out.append(full)
    return sorted(set(out))


def invertible(cand: Candidate) -> bool:
    """Every part of the bug is of a kind the mutation agents can undo."""
    return all(kind in INVERTIBLE_KINDS for kind in cand.kinds)


def combined_candidates(
    singles: list[Candidate], count: int, seed: int, stream: str = "combined"
) -> list[Candidate]:
    """Up to ``count * COMBINED_TRIES_PER_TASK`` combinations of 2-3 valid bugs in distinct functions of one
    file (``combine_file``) or one package folder (``combine_module``), in an order seeded by (seed, stream)."""
    rng = random.Random(_seed_for(seed, stream))
    scopes: list[tuple[str, dict[str, list[Candidate]]]] = []
    by_file: dict[str, dict[str, list[Candidate]]] = defaultdict(lambda: defaultdict(list))
    by_dir: dict[str, dict[str, list[Candidate]]] = defaultdict(lambda: defaultdict(list))
    for cand in singles:
        by_file[cand.file][cand.entity].append(cand)
        by_dir[str(Path(cand.file).parent)][cand.entity].append(cand)
    scopes += [("combine_file", ents) for _, ents in sorted(by_file.items()) if len(ents) >= 2]
    multi_file_dirs = [
        ents for _, ents in sorted(by_dir.items()) if len({e.split("::", 1)[0] for e in ents}) >= 2
    ]
    scopes += [("combine_module", ents) for ents in multi_file_dirs]
    out: list[Candidate] = []
    seen: set[str] = set()
    want = count * COMBINED_TRIES_PER_TASK
    for _ in range(want * 20):
        if len(out) >= want or not scopes:
            break
        kind, ents = scopes[rng.randrange(len(scopes))]
        size = min(rng.choice((2, 3)), len(ents))
        picked = [rng.choice(ents[e]) for e in rng.sample(sorted(ents), size)]
        if kind == "combine_module" and len({c.file for c in picked}) < 2:
            continue
        picked.sort(key=lambda c: (c.file, c.entity, c.key))
        key = patch_key("+".join(c.key for c in picked))
        if key in seen:
            continue
        seen.add(key)
        out.append(
            Candidate(
                key,
                [c.kinds[0] for c in picked],
                picked[0].entity,
                picked[0].file,
                parts=[c.patch for c in picked],
                entities=[c.entity for c in picked],
                combine=kind,
            )
        )
    return out


# ---------------------------------------------------------------- validation workers

_WORKER: dict[str, Any] = {}


def _init_worker(env_data: dict[str, Any], base_passed: list[str], work_root: str, timeout_s: float) -> None:
    """One local Sandbox per worker process, on a clean clone of the checkout (reset with git, not re-copied)."""
    from multiprocessing.util import Finalize

    from hrm_spawn.envs.sandbox import Sandbox, SandboxConfig

    env = RepoEnv(**env_data)
    config = SandboxConfig(
        test_timeout_s=timeout_s, command_timeout_s=max(60.0, timeout_s), repos_dir=str(Path(env.root).parent)
    )
    sandbox = Sandbox(config)
    with warnings.catch_warnings():
        # The host-execution warning is printed once by the parent (build_tasks), not once per worker.
        warnings.simplefilter("ignore", RuntimeWarning)
        sandbox.prepare_clean(env.name)
    # The parent removes what a terminated worker leaves behind: it reads the clone's folder from here.
    (Path(work_root) / f"w{os.getpid()}").write_text(str(Path(sandbox.repo_dir).parent))
    Finalize(sandbox, sandbox.close, exitpriority=10)
    _WORKER.update(env=env, sandbox=sandbox, base_passed=base_passed, timeout_s=timeout_s)


def validate_candidate(cand: Candidate) -> dict[str, Any]:
    """Apply in the worker's sandbox, run the full suite, compare with the clean baseline, reset."""
    from hrm_spawn.envs.sandbox import PatchApplyError

    env: RepoEnv = _WORKER["env"]
    sandbox = _WORKER["sandbox"]
    timeout_s: float = _WORKER["timeout_s"]
    record: dict[str, Any] = {"key": cand.key, "base_commit": env.base_commit, "valid": False}
    sandbox.reset()
    try:
        for part in cand.parts or [cand.patch]:
            sandbox.apply_patch(part)
        patch = sandbox.diff() if cand.parts else cand.patch
        suite = pytest_command(
            sandbox.python, [*sandbox.test_paths, *SUMMARY_ARGS], sandbox.test_env, timeout_s
        )
        result = sandbox.run(f"( cd {shlex.quote(sandbox.repo_dir)} && {suite} )", timeout_s=timeout_s + 10)
    except PatchApplyError as exc:
        record["reason"] = f"does not apply: {str(exc)[:300]}"
        return record
    finally:
        sandbox.reset()
    killed = result.timed_out or result.exit_code == 137
    report = parse_report(result.output, result.duration_s, killed)
    base = _WORKER["base_passed"]
    f2p = sorted(t for t in base if not report.passed(t))
    p2p = sorted(t for t in base if report.passed(t))
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


def _remove_worker_clones(work_root: str) -> None:
    for marker in Path(work_root).glob("w*"):
        shutil.rmtree(marker.read_text().strip(), ignore_errors=True)
    shutil.rmtree(work_root, ignore_errors=True)


# ---------------------------------------------------------------- sidecar and scheduling


class Sidecar:
    """Append-only JSONL of validation results, keyed by candidate hash (resume skips these)."""

    def __init__(self, path: Path, base_commit: str):
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interrupted run: that candidate is validated again
                if isinstance(rec, dict) and rec.get("base_commit") == base_commit and "key" in rec:
                    self.records[rec["key"]] = rec
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def add(self, record: dict[str, Any]) -> None:
        self.records[record["key"]] = record
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _selected(
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


def run_validation(
    cands: list[Candidate],
    limit: int | None,
    sidecar: Sidecar,
    pool_args: tuple,
    workers: int,
    title: str,
    report: BuildReport,
) -> list[Candidate]:
    """Validate in parallel until the first ``limit`` valid candidates (in order) are known."""
    todo = [c for c in cands if c.key not in sidecar.records]
    report.reused += len(cands) - len(todo)
    chosen = _selected(cands, sidecar.records, limit)
    if chosen is not None or not todo:
        return chosen or []
    # The pool is made (its workers forked) before the progress bar starts its thread.
    with _pool(workers, _init_worker, pool_args) as pool, progress(title, len(todo), unit="candidate") as bar:
        for record in pool.imap_unordered(validate_candidate, todo):
            sidecar.add(record)
            bar.update()
            if limit is not None and _selected(cands, sidecar.records, limit) is not None:
                pool.terminate()
                break
    return _selected(cands, sidecar.records, limit) or []


def _pool(workers: int, initializer: Any = None, initargs: tuple = ()) -> Any:
    """Fork where possible: workers inherit the imports (seconds saved each) and callers need no
    ``if __name__ == "__main__"`` guard; spawn elsewhere."""
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method).Pool(workers, initializer, initargs)


# ---------------------------------------------------------------- tasks


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
    singles: list[Candidate],
    count: int,
    seed: int,
    sidecar: Sidecar,
    pool_args: tuple,
    workers: int,
    report: BuildReport,
) -> tuple[list[Candidate], list[Candidate]]:
    """(candidates tried, combined bugs kept): first up to half of ``count`` (rounded up) made only of
    invertible kinds, so delegation between mutation agents can fix them edit by edit; then the rest
    from every kept single bug, as before. Both orders are seeded, so the result depends on the seed only."""
    if not count:
        return [], []
    want_inv = (count + 1) // 2
    inv = combined_candidates([c for c in singles if invertible(c)], want_inv, seed, "combined-invertible")
    kept_inv = run_validation(
        inv, want_inv, sidecar, pool_args, workers, "combined bugs (invertible)", report
    )
    report.combined_invertible = len(kept_inv)
    left = count - len(kept_inv)
    tried = {c.key for c in inv}
    rest = [c for c in combined_candidates(singles, left, seed) if c.key not in tried] if left else []
    kept_rest = (
        run_validation(rest, left, sidecar, pool_args, workers, "combined bugs", report) if left else []
    )
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
    mark = time.perf_counter()
    singles, report.entities = generate_candidates(env, seed, variants, workers, kinds)
    report.generate_s = round(time.perf_counter() - mark, 2)
    report.candidates = dict(Counter(c.label for c in singles))

    clean = baseline(env)
    base_passed = sorted(t for t in clean.status if clean.passed(t))
    timeout_s = max(
        60.0, 10 * env.test_run_s
    )  # generous: a loaded machine must not turn slow runs into rejects
    sidecar = Sidecar(out.with_name(out.name + ".validation.jsonl"), env.base_commit)
    work_root = tempfile.mkdtemp(prefix="work-", dir=env.root)
    pool_args = (asdict(env), base_passed, work_root, timeout_s)
    mark = time.perf_counter()
    try:
        kept_singles = run_validation(singles, max_bugs, sidecar, pool_args, workers, "single bugs", report)
        kept_singles = _with_patch(kept_singles, sidecar.records)
        n_combined = DEFAULT_COMBINED if combined is None else combined
        combos, kept_combos = _combine(kept_singles, n_combined, seed, sidecar, pool_args, workers, report)
    finally:
        sidecar.close()
        _remove_worker_clones(work_root)
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


def iter_kinds() -> Iterator[str]:
    """The 13 SWE-smith Python modifier names, in SWE-smith's order."""
    from hrm_spawn.envs.swesmith_py import python_modifiers

    for modifier in python_modifiers():
        yield modifier.name


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
