"""A fixed train/held-out split with no leakage: bugs in the same function land on the same side.

Tasks are grouped by ``entity`` ("path.py::Qualified.name"), falling back to the set of files the patch
touches; tasks sharing a key are joined into one group. A combined bug carries several entities
separated by ","; it follows its *first* function only. Joining on all of them would chain most of a
small repository into a handful of groups (tinydb: 267 tasks in 14 groups), leaving no usable split;
the price is that a combined bug may share its other functions with the other side.
Groups are ranked by a seeded SHA-256 of their smallest key (stable across processes and Python
versions) and taken into held-out until it holds ``heldout_fraction`` of the tasks. A task with an
explicit ``split`` field keeps it, and the rest of its group follows it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from collections.abc import Sequence

from unidiff import PatchSet

from envs.tasks import TaskError, TaskInstance, TaskLoadResult, load_tasks

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

    owner: dict[str, int] = {}
    for i, task in enumerate(tasks):
        for key in group_keys(task):
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


def split_tasks(
    tasks: Sequence[TaskInstance], heldout_fraction: float = 0.25, seed: int = 0
) -> dict[str, list[TaskInstance]]:
    """``{"train": [...], "heldout": [...]}``, deterministic for (task set, fraction, seed), input order kept."""
    if not 0.0 <= heldout_fraction <= 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1], got {heldout_fraction}")
    side: dict[int, str] = {}
    free: list[list[int]] = []
    for group in group_tasks(tasks):
        explicit = Counter(tasks[i].split for i in group if tasks[i].split)
        if explicit:
            majority = explicit.most_common(1)[0][0]
            for i in group:  # an explicit label always wins; unlabelled members follow the group
                side[i] = tasks[i].split or majority
        else:
            free.append(group)
    target = heldout_fraction * len(tasks)
    held = sum(1 for s in side.values() if s == "heldout")
    free.sort(key=lambda g: _rank(set().union(*(group_keys(tasks[i]) for i in g)), seed))
    for group in free:
        # take a group when that brings held-out closer to the target than leaving it out
        to_heldout = heldout_fraction > 0 and held + len(group) / 2 <= target
        held += len(group) if to_heldout else 0
        for i in group:
            side[i] = "heldout" if to_heldout else "train"
    out: dict[str, list[TaskInstance]] = {name: [] for name in SPLITS}
    for i, task in enumerate(tasks):
        out[side[i]].append(task)
    return out


def select_split(tasks: Sequence[TaskInstance], name: str, heldout_fraction: float = 0.25, seed: int = 0) -> list[TaskInstance]:
    """The tasks of one side, or all of them for ``"all"``/``None``."""
    if name in (None, "all"):
        return list(tasks)
    if name not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS + ('all',)}, not {name!r}")
    return split_tasks(tasks, heldout_fraction, seed)[name]


def cli_split(args: argparse.Namespace) -> int:
    """``hrm-spawn tasks split FILE``: tasks and groups per side."""
    try:
        result: TaskLoadResult = load_tasks(args.file)
    except TaskError as exc:  # the file itself cannot be read
        print(exc, file=sys.stderr)
        return 1
    if result.problems:
        print(f"{len(result.problems)} invalid records skipped (see `hrm-spawn tasks check {args.file}`)", file=sys.stderr)
    sides = split_tasks(result.tasks)
    for name in SPLITS:
        groups = len(group_tasks(sides[name]))
        print(f"{name}: {len(sides[name])} tasks in {groups} groups")
    return 0
