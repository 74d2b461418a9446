"""A fixed train/held-out split with no leakage: bugs in the same function land on the same side.

Tasks are grouped by ``entity`` ("path.py::Qualified.name"), falling back to the set of files the patch
touches; tasks sharing a key are joined into one group. A combined bug carries several entities
separated by ","; it follows its *first* function only. Joining on all of them would chain most of a
small repository into a handful of groups (tinydb: 267 tasks in 14 groups), leaving no usable split;
the price is that a combined bug may share its other functions with the other side.
Groups are ranked by a seeded SHA-256 of their smallest key (stable across processes and Python
versions) and taken into held-out until it holds ``heldout_fraction`` of the tasks, separately per
stratum: per repository, groups with a bug the agents can undo (``TaskInstance.invertible``) and the
rest. Without strata a small set can put nearly every fixable bug on one side (a 30-task tinydb set gave
3 fixable of 22 train tasks and 5 of 8 held-out), and a policy then learns from, or is judged on, almost
nothing; a table imported from another harness spans many repositories, and each gets its share of
held-out. A task known only by id (``replay_only``: no patch, no entity) is a group of its own.
A task with an explicit ``split`` field keeps it, and the rest of its group follows it.

Cross-fitting (``folds`` = K >= 2) partitions the groups into K folds instead, balanced per stratum;
fold k is the held-out side of split k, so K policies, each judged on its own held-out fold, judge every
task exactly once (benchmarks/heldout_folds.py pools them). It needs unlabelled tasks: a labelled one
would sit on the same side in every fold.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from collections.abc import Sequence

from unidiff import PatchSet

from hrm_spawn.envs.tasks import TaskError, TaskInstance, TaskLoadResult, load_tasks

SPLITS = ("train", "heldout")


def group_keys(task: TaskInstance) -> set[str]:
    """What ties a task to others: its entities, or the files its patch touches."""
    if task.entity:
        entities = [e.strip() for e in task.entity.split(",") if e.strip()]
        if entities:
            return {f"entity:{entities[0]}"}
    return {f"file:{f.path}" for f in PatchSet(task.patch)} or {f"task:{task.instance_id}"}


def group_tasks(tasks: Sequence[TaskInstance]) -> list[list[int]]:
    """Indices of tasks joined by shared keys (union-find), each group sorted."""
    parent = list(range(len(tasks)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[tuple[str, str], int] = {}
    for i, task in enumerate(tasks):
        # keys join tasks of one repository only: two repositories may both have a "src/utils.py"
        for key in ((task.repo_key, k) for k in group_keys(task)):
            if key in owner:
                parent[find(i)] = find(owner[key])
            else:
                owner[key] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(tasks)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _rank(keys: set[str], seed: int) -> str:
    return hashlib.sha256(f"{seed}\0{min(keys)}".encode()).hexdigest()


Stratum = tuple[str, bool]  # (repository, fixable)


def _stratum(tasks: Sequence[TaskInstance], group: list[int]) -> Stratum:
    """A group's repository (its first task's: a group never spans two in practice) and whether any of
    its bugs is of a fixable kind."""
    return tasks[group[0]].repo_key, any(tasks[i].invertible for i in group)


def _strata_order(strata: set[Stratum]) -> list[Stratum]:
    # per repository, the fixable stratum first (the order the split has always filled them in)
    return sorted(strata, key=lambda s: (s[0], not s[1]))


def _free_groups(tasks: Sequence[TaskInstance], side: dict[int, str], seed: int) -> list[list[int]]:
    """Groups without an explicit label, in seeded order; labelled groups are written into ``side``."""
    free: list[list[int]] = []
    for group in group_tasks(tasks):
        explicit = Counter(tasks[i].split for i in group if tasks[i].split)
        if explicit:
            majority = explicit.most_common(1)[0][0]
            for i in group:  # an explicit label always wins; unlabelled members follow the group
                side[i] = tasks[i].split or majority
        else:
            free.append(group)
    free.sort(key=lambda g: _rank(set().union(*(group_keys(tasks[i]) for i in g)), seed))
    return free


def split_tasks(
    tasks: Sequence[TaskInstance],
    heldout_fraction: float = 0.25,
    seed: int = 0,
    folds: int = 0,
    fold: int = 0,
) -> dict[str, list[TaskInstance]]:
    """``{"train": [...], "heldout": [...]}``, deterministic for (task set, fraction, seed), input order kept.

    With ``folds`` >= 2 the held-out side is fold ``fold`` of :func:`assign_folds` and the fraction is unused.
    """
    if folds >= 2:
        if not 0 <= fold < folds:
            raise ValueError(f"fold must be in [0, {folds}), got {fold}")
        of = assign_folds(tasks, folds, seed)
        side = {i: "heldout" if f == fold else "train" for i, f in enumerate(of)}
    else:
        side = _fraction_sides(tasks, heldout_fraction, seed)
    out: dict[str, list[TaskInstance]] = {name: [] for name in SPLITS}
    for i, task in enumerate(tasks):
        out[side[i]].append(task)
    return out


def _fraction_sides(tasks: Sequence[TaskInstance], heldout_fraction: float, seed: int) -> dict[int, str]:
    if not 0.0 <= heldout_fraction <= 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1], got {heldout_fraction}")
    side: dict[int, str] = {}
    free = _free_groups(tasks, side, seed)
    # the stratum of a task: its group's for free groups, its own for explicitly labelled ones
    stratum = {i: _stratum(tasks, [i]) for i in side} | {i: _stratum(tasks, g) for g in free for i in g}
    for wanted in _strata_order(set(stratum.values())):
        members = [i for i in range(len(tasks)) if stratum[i] == wanted]
        target = heldout_fraction * len(members)
        held = sum(1 for i in members if side.get(i) == "heldout")
        for group in (g for g in free if stratum[g[0]] == wanted):
            # take a group when that brings held-out closer to the target than leaving it out
            to_heldout = heldout_fraction > 0 and held + len(group) / 2 <= target
            held += len(group) if to_heldout else 0
            for i in group:
                side[i] = "heldout" if to_heldout else "train"
    return side


def assign_folds(tasks: Sequence[TaskInstance], folds: int, seed: int = 0) -> list[int]:
    """The fold (0 … folds-1) of every task: whole groups, each stratum spread evenly over the folds."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    labelled = [t.instance_id for t in tasks if t.split]
    if labelled:
        raise ValueError(
            f"cross-fitting needs tasks without a 'split' label; {labelled[0]} has one "
            f"({len(labelled)} labelled in all)"
        )
    of = [0] * len(tasks)
    total = [0] * folds
    free = _free_groups(tasks, {}, seed)
    for wanted in _strata_order({_stratum(tasks, g) for g in free}):
        in_stratum = [0] * folds
        # larger groups first, so the small ones can even out the folds (stable: seeded order within a size)
        for group in sorted((g for g in free if _stratum(tasks, g) == wanted), key=len, reverse=True):
            k = min(range(folds), key=lambda f: (in_stratum[f], total[f], f))
            in_stratum[k] += len(group)
            total[k] += len(group)
            for i in group:
                of[i] = k
    return of


def select_split(
    tasks: Sequence[TaskInstance],
    name: str,
    heldout_fraction: float = 0.25,
    seed: int = 0,
    folds: int = 0,
    fold: int = 0,
) -> list[TaskInstance]:
    """The tasks of one side, or all of them for ``"all"``/``None``."""
    if name in (None, "all"):
        return list(tasks)
    if name not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS + ('all',)}, not {name!r}")
    return split_tasks(tasks, heldout_fraction, seed, folds, fold)[name]


def cli_split(args: argparse.Namespace) -> int:
    """``hrm-spawn tasks split FILE [--folds K] [--seed S]``: tasks and groups per side (or per fold)."""
    try:
        result: TaskLoadResult = load_tasks(args.file)
    except TaskError as exc:  # the file itself cannot be read
        print(exc, file=sys.stderr)
        return 1
    if result.problems:
        print(
            f"{len(result.problems)} invalid records skipped (see `hrm-spawn tasks check {args.file}`)",
            file=sys.stderr,
        )
    seed, folds = getattr(args, "seed", 0), getattr(args, "folds", 0)
    if folds:
        try:
            of = assign_folds(result.tasks, folds, seed)
        except ValueError as exc:
            print(f"{args.file}: {exc}", file=sys.stderr)
            return 1
        for k in range(folds):
            part = [t for t, f in zip(result.tasks, of, strict=True) if f == k]
            fixable = sum(t.invertible for t in part)
            print(
                f"fold {k}: {len(part)} tasks in {len(group_tasks(part))} groups, {fixable} of a fixable kind"
            )
            _print_groups(part)
        return 0
    sides = split_tasks(result.tasks, seed=seed)
    for name in SPLITS:
        groups = len(group_tasks(sides[name]))
        repos = len({t.repo_key for t in sides[name]})
        print(f"{name}: {len(sides[name])} tasks in {groups} groups from {repos} repositories")
        _print_groups(sides[name])
    return 0


def _print_groups(tasks: Sequence[TaskInstance]) -> None:
    """One indented line per group: what ties it together, then its task ids."""
    for group in group_tasks(tasks):
        keys = sorted(set().union(*(group_keys(tasks[i]) for i in group)))
        tie = keys[0] + (f" (+{len(keys) - 1} more)" if len(keys) > 1 else "")
        print(f"  {tie}: " + ", ".join(tasks[i].instance_id for i in group))
