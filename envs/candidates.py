"""Candidate bugs for ``tasks build``: SWE-smith's Python modifiers on a repository's entities, in a seeded order.

Entities (functions and classes) come from SWE-smith's Python adapter on a local profile of the checkout,
sorted by (path, line, name), without tests, docs and build scripts. Each of the 13 modifiers runs as a
fresh instance seeded by (seed, kind), for a few passes (every modifier is random); the distinct patches
of all kinds are then interleaved in an order seeded by the seed alone. Combinations of 2-3 valid single
bugs of one file or package folder are drawn the same way. Validation is :mod:`hrm_spawn.envs.validation`.

A worker of the build's pool generates one kind per job (:class:`KindJob`, run by
:class:`GenerationRunner`), so the kinds are generated in parallel on the same processes that validate.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hrm_spawn.envs.executors import Executor, LocalExecutor, fork_if_possible, run_all
from hrm_spawn.envs.repos import RepoEnv
from hrm_spawn.envs.tasks import INVERTIBLE_KINDS

DEFAULT_VARIANTS = 6  # seeded passes per modifier: each pass draws new random choices
COMBINED_TRIES_PER_TASK = 3
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


def iter_kinds() -> Iterator[str]:
    """The 13 SWE-smith Python modifier names, in SWE-smith's order."""
    from hrm_spawn.envs.swesmith_py import python_modifiers

    for modifier in python_modifiers():
        yield modifier.name


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


def patch_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _seed_for(seed: int, label: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{label}".encode()).digest()[:8], "big")


# ---------------------------------------------------------------- entities


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
    from hrm_spawn.envs.swesmith_py import register_local_profile

    owner, _, repo = env.name.partition("__")
    # a copy: registering records the profile and its aliases on the env, which the build does not save
    profile = register_local_profile(
        replace(env, aliases=list(env.aliases)), owner, repo or owner, env.base_commit or "0" * 40
    )
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


_ENTITIES: dict[str, list[tuple[str, Any]]] = {}


def entities_cached(env: RepoEnv) -> list[tuple[str, Any]]:
    """:func:`extract_entities`, once per process and repository (a forked worker inherits the parent's)."""
    key = f"{env.root}@{env.base_commit}"
    if key not in _ENTITIES:
        _ENTITIES[key] = extract_entities(env)
    return _ENTITIES[key]


# ---------------------------------------------------------------- single edits


def kind_candidates(env: RepoEnv, kind: str, seed: int, variants: int) -> list[Candidate]:
    """The distinct candidates of one modifier kind, from a fresh modifier seeded by (seed, kind)."""
    from hrm_spawn.envs.swesmith_py import patch_for, python_modifiers

    shared = next(m for m in python_modifiers() if m.name == kind)
    # A fresh instance per build: the shared one carries random state from earlier use.
    modifier = type(shared)(likelihood=shared.likelihood, seed=_seed_for(seed, kind))
    eligible = [(name, ent) for name, ent in entities_cached(env) if modifier.can_change(ent)]
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


@dataclass(frozen=True)
class KindJob:
    """Generate one modifier kind's candidates (a job for a worker of the build's pool)."""

    kind: str
    seed: int
    variants: int


@dataclass
class KindResult:
    kind: str
    candidates: list[Candidate]
    entities: int  # how many entities the repository has
    error: str = ""  # the worker died or failed: no candidates


class GenerationRunner:
    """A worker's part for generation (the repository's entities are extracted once per process)."""

    def __init__(self, env_data: dict[str, Any]):
        self.env = RepoEnv(**env_data)

    def run(self, job: KindJob) -> KindResult:
        try:
            found = kind_candidates(self.env, job.kind, job.seed, job.variants)
            return KindResult(job.kind, found, len(entities_cached(self.env)))
        except Exception as exc:  # reported to the parent, which stops the build naming the kind
            return KindResult(job.kind, [], 0, f"{type(exc).__name__}: {exc}"[:2000])

    def close(self) -> None:
        pass


def order_candidates(results: list[KindResult], seed: int) -> list[Candidate]:
    """Every distinct single-edit candidate of ``results`` (in sorted kind order), the kinds interleaved in
    an order seeded by ``seed``. The same edit reached by two kinds is kept once, under the first kind."""
    failed = [r for r in results if r.error]
    if failed:
        raise RuntimeError(f"candidate generation failed for {failed[0].kind}: {failed[0].error}")
    rng = random.Random(_seed_for(seed, "order"))
    queues, seen = [], set()
    for result in sorted(results, key=lambda r: r.kind):
        queue = [c for c in result.candidates if c.key not in seen]
        seen.update(c.key for c in queue)
        rng.shuffle(queue)
        queues.append(queue)
    return [q[i] for i in range(max((len(q) for q in queues), default=0)) for q in queues if i < len(q)]


@dataclass(frozen=True)
class GenerationSpec:
    """A worker that only generates (see :class:`hrm_spawn.envs.executors.WorkerSpec`)."""

    env_data: dict[str, Any]

    def build(self) -> GenerationRunner:
        return GenerationRunner(self.env_data)

    def failed(self, job: KindJob, kind: str, reason: str, worker: str) -> KindResult:
        return KindResult(job.kind, [], 0, f"{kind}: {reason}")

    def job_limit(self, job: KindJob) -> float | None:
        return None  # pure Python on the checkout's sources: nothing to hang on


def generate_candidates(
    env: RepoEnv,
    seed: int,
    variants: int = DEFAULT_VARIANTS,
    workers: int = 1,
    kinds: list[str] | None = None,
    executor: Executor | None = None,
) -> tuple[list[Candidate], int]:
    """Every distinct single-edit candidate, in a seeded order that interleaves the kinds; and #entities.

    Kinds are independent (each has its own seeded modifier), so they are generated in parallel: on
    ``executor`` (the build's pool, whose runners take :class:`KindJob`), else on ``workers`` processes
    of their own, else here. ``kinds`` keeps only those modifiers (each kind's candidates are the same
    as in a build of every kind).
    """
    kinds = check_kinds(kinds) if kinds else sorted(iter_kinds())
    jobs = [KindJob(kind, seed, variants) for kind in kinds]
    if executor is not None:
        results = run_all(executor, jobs)
    elif workers > 1:
        entities_cached(env)  # before the fork: the workers inherit them
        with LocalExecutor(min(workers, len(jobs)), GenerationSpec(asdict(env)), fork_if_possible()) as pool:
            results = run_all(pool, jobs)
    else:
        runner = GenerationRunner(asdict(env))
        results = [runner.run(job) for job in jobs]
    return order_candidates(results, seed), max((r.entities for r in results), default=0)


# ---------------------------------------------------------------- combinations


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
