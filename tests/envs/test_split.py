"""The train/held-out split: deterministic, no function on both sides, explicit labels kept."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hrm_spawn.envs.split import assign_folds, cli_split, group_tasks, select_split, split_tasks
from hrm_spawn.envs.tasks import TaskInstance, save_tasks


@pytest.fixture(autouse=True)
def _home(hrm_home: Path) -> None:
    """Every test gets its own HRM_SPAWN_HOME (conftest's hrm_home)."""


def patch_for(*files: str) -> str:
    return "".join(f"diff --git a/{f} b/{f}\n--- a/{f}\n+++ b/{f}\n@@ -1 +1 @@\n-a\n+b\n" for f in files)


def task(
    instance_id: str, entity: str | None = None, files: tuple[str, ...] = ("m.py",), **extra
) -> TaskInstance:
    return TaskInstance(
        instance_id=instance_id,
        repo="r",
        patch=patch_for(*files),
        FAIL_TO_PASS=["t::a"],
        PASS_TO_PASS=[],
        image_name="",
        entity=entity,
        **extra,
    )


def corpus() -> list[TaskInstance]:
    """40 functions with 1-4 bugs each, a few combined bugs spanning two functions, a few without entity."""
    tasks = []
    for f in range(40):
        for b in range(1 + f % 4):
            tasks.append(task(f"f{f}_b{b}", entity=f"pkg/m{f % 7}.py::func{f}"))
    for c in range(5):
        tasks.append(task(f"combo{c}", entity=f"pkg/m0.py::func{c},pkg/m1.py::func{c + 10}"))
    for n in range(6):
        tasks.append(task(f"noent{n}", files=(f"pkg/other{n % 3}.py",)))
    return tasks


def side_of(split: dict[str, list[TaskInstance]]) -> dict[str, str]:
    return {t.instance_id: name for name, tasks in split.items() for t in tasks}


def test_no_function_or_file_group_on_both_sides() -> None:
    tasks = corpus()
    split = split_tasks(tasks, heldout_fraction=0.25, seed=0)
    assert sorted(side_of(split)) == sorted(t.instance_id for t in tasks)  # a partition
    sides_per_key: dict[str, set[str]] = {}
    for name, part in split.items():
        for t in part:
            # a combined bug is tied to its first function (see envs/split.py)
            keys = t.entity.split(",")[:1] if t.entity else [t.patch.split()[2]]
            for key in keys:
                sides_per_key.setdefault(key, set()).add(name)
    leaked = {k: s for k, s in sides_per_key.items() if len(s) > 1}
    assert not leaked
    share = len(split["heldout"]) / len(tasks)
    assert 0.18 <= share <= 0.32, share


def test_deterministic_order_kept_and_seed_matters() -> None:
    tasks = corpus()
    first = split_tasks(tasks, seed=3)
    assert side_of(first) == side_of(split_tasks(list(tasks), seed=3))
    assert side_of(first) == side_of(split_tasks(list(reversed(tasks)), seed=3))
    assert [t.instance_id for t in first["train"]] == [
        t.instance_id for t in tasks if side_of(first)[t.instance_id] == "train"
    ]
    assert side_of(first) != side_of(split_tasks(tasks, seed=4))


def test_combined_bug_follows_its_first_function() -> None:
    tasks = [task("a", "m.py::f"), task("b", "m.py::g"), task("ab", "m.py::f, m.py::g"), task("c", "m.py::h")]
    groups = sorted(sorted(tasks[i].instance_id for i in g) for g in group_tasks(tasks))
    assert groups == [["a", "ab"], ["b"], ["c"]]


def test_combined_bugs_do_not_chain_the_repository_into_one_group() -> None:
    chain = [task(f"s{i}", f"m.py::f{i}") for i in range(20)]
    chain += [task(f"c{i}", f"m.py::f{i},m.py::f{i + 1}") for i in range(19)]
    assert len(group_tasks(chain)) == 20


def test_explicit_split_kept_and_group_follows() -> None:
    tasks = corpus()
    labelled = [t.model_copy(update={"split": "heldout"}) if t.instance_id == "f1_b0" else t for t in tasks]
    for seed in range(3):
        sides = side_of(split_tasks(labelled, seed=seed))
        assert sides["f1_b0"] == "heldout" and sides["f1_b1"] == "heldout"
    only_train = [t.model_copy(update={"split": "train"}) for t in tasks[:5]]
    assert side_of(split_tasks(only_train, heldout_fraction=1.0)) == {
        t.instance_id: "train" for t in only_train
    }


def test_fraction_edges_and_select() -> None:
    tasks = corpus()
    assert split_tasks(tasks, heldout_fraction=0.0)["heldout"] == []
    assert split_tasks(tasks, heldout_fraction=1.0)["train"] == []
    assert select_split(tasks, "all") == tasks
    assert select_split(tasks, "heldout") == split_tasks(tasks)["heldout"]
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_tasks(tasks, heldout_fraction=1.5)
    with pytest.raises(ValueError, match="split must be one of"):
        select_split(tasks, "test")


def test_cli_split_prints_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = corpus()
    path = save_tasks(tasks, tmp_path / "t.jsonl")
    assert cli_split(argparse.Namespace(file=str(path))) == 0
    split = split_tasks(tasks)
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if not line.startswith("  ")]  # the per-side summaries
    assert lines[0].startswith(f"train: {len(split['train'])} tasks in ")
    assert lines[1].startswith(f"heldout: {len(split['heldout'])} tasks in ")
    # then the groups of each side, indented, naming every task once (docs/tasks.md promises them)
    heldout_at = out.index(lines[1])
    listed = [line.split(": ", 1)[1].split(", ") for line in out if line.startswith("  ")]
    assert sorted(i for ids in listed for i in ids) == sorted(t.instance_id for t in tasks)
    heldout_ids = {i for line in out[heldout_at + 1 :] for i in line.split(": ", 1)[1].split(", ")}
    assert heldout_ids == {t.instance_id for t in split["heldout"]}


@pytest.mark.parametrize("seed", range(5))
def test_fixable_bugs_are_split_in_proportion(seed):
    """Bugs the agents can undo and removals are split separately, so neither side gets all the fixable ones."""
    tasks = []
    for f in range(24):
        kind = "func_pm_op_change" if f < 8 else "func_pm_remove_assign"
        tasks.append(task(f"f{f}", entity=f"pkg/m.py::func{f}", modifier_kinds=[kind]))
    sides = split_tasks(tasks, heldout_fraction=0.25, seed=seed)
    assert [sum(t.invertible for t in sides[s]) for s in ("train", "heldout")] == [6, 2]
    assert [len(sides[s]) for s in ("train", "heldout")] == [18, 6]
    assert not task("x", modifier_kinds=["func_pm_op_change", "func_pm_remove_loop"]).invertible
    assert not task("y").invertible  # no kinds recorded: not known to be fixable


def test_folds_partition_whole_groups_with_strata_spread() -> None:
    tasks = [
        t.model_copy(
            update={"modifier_kinds": ["func_pm_op_change" if i % 3 == 0 else "func_pm_remove_assign"]}
        )
        for i, t in enumerate(corpus())
    ]
    of = assign_folds(tasks, 4, seed=1)
    for group in group_tasks(tasks):
        assert len({of[i] for i in group}) == 1  # a group never straddles folds
    sizes = [of.count(k) for k in range(4)]
    assert max(sizes) - min(sizes) <= 4, sizes  # the largest group holds 4 tasks
    fixable = [sum(1 for i, k in enumerate(of) if k == f and tasks[i].invertible) for f in range(4)]
    assert max(fixable) - min(fixable) <= 4, fixable
    held = [side_of(split_tasks(tasks, seed=1, folds=4, fold=k)) for k in range(4)]
    for i, t in enumerate(tasks):  # held out in exactly its own fold
        assert [h[t.instance_id] for h in held].count("heldout") == 1
        assert held[of[i]][t.instance_id] == "heldout"
    assert assign_folds(list(reversed(tasks)), 4, seed=1) == list(reversed(of))
    assert assign_folds(tasks, 4, seed=2) != of


def test_folds_refuse_labels_and_bad_numbers() -> None:
    tasks = corpus()
    with pytest.raises(ValueError, match="f0_b0 has one"):
        assign_folds([tasks[0].model_copy(update={"split": "train"}), *tasks[1:]], 3)
    with pytest.raises(ValueError, match="folds must be >= 2"):
        assign_folds(tasks, 1)
    with pytest.raises(ValueError, match=r"fold must be in \[0, 3\)"):
        split_tasks(tasks, folds=3, fold=3)


def test_env_config_selects_a_fold(tmp_path: Path) -> None:
    from hrm_spawn.envs.config import ConfigError
    from hrm_spawn.envs.spawn_env import load_env_config, load_env_tasks

    path = save_tasks(corpus(), tmp_path / "t.jsonl")
    held = [
        {
            t.instance_id
            for t in load_env_tasks(
                load_env_config({"tasks": str(path), "split": "heldout", "folds": 3, "fold": k})
            )
        }
        for k in range(3)
    ]
    assert sorted(set().union(*held)) == sorted(t.instance_id for t in corpus())
    assert sum(map(len, held)) == len(corpus())
    with pytest.raises(ConfigError, match="fold must be in"):
        load_env_config({"tasks": str(path), "folds": 3}, ["fold=3"])
    with pytest.raises(ConfigError, match="folds must be 0"):
        load_env_config({"folds": 1})


def test_cli_split_prints_folds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = corpus()
    path = save_tasks(tasks, tmp_path / "t.jsonl")
    assert cli_split(argparse.Namespace(file=str(path), folds=3, seed=0)) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("  ")]
    of = assign_folds(tasks, 3, 0)
    assert [line.split(":")[0] for line in lines] == ["fold 0", "fold 1", "fold 2"]
    assert [int(line.split()[2]) for line in lines] == [of.count(k) for k in range(3)]
    labelled = save_tasks([tasks[0].model_copy(update={"split": "train"}), *tasks[1:]], tmp_path / "l.jsonl")
    assert cli_split(argparse.Namespace(file=str(labelled), folds=3, seed=0)) == 1
    assert "f0_b0 has one" in capsys.readouterr().err


def imported(n_per_repo: dict[str, int]) -> list[TaskInstance]:
    """Tasks known only by id, as `store import` writes them: no patch, no entity, several repositories."""
    return [
        TaskInstance(instance_id=f"{repo.replace('/', '__')}-{i}", repo=repo, replay_only=True)
        for repo, n in n_per_repo.items()
        for i in range(n)
    ]


def test_imported_tasks_split_per_repository() -> None:
    sizes = {"django/django": 40, "sympy/sympy": 20, "psf/requests": 8}
    split = split_tasks(imported(sizes), heldout_fraction=0.25, seed=3)
    assert len(split["heldout"]) == 17  # not all-or-nothing: every task is a group of its own
    for repo, n in sizes.items():
        held = sum(t.repo == repo for t in split["heldout"])
        assert held == round(0.25 * n), (repo, held)


def test_imported_tasks_spread_over_folds_per_repository() -> None:
    sizes = {"django/django": 12, "sympy/sympy": 6, "psf/requests": 3}
    tasks = imported(sizes)
    of = assign_folds(tasks, 3, seed=0)
    for repo, n in sizes.items():
        counts = [
            sum(1 for t, f in zip(tasks, of, strict=True) if f == k and t.repo == repo) for k in range(3)
        ]
        assert counts == [n // 3] * 3, (repo, counts)


def test_same_file_in_two_repositories_is_two_groups() -> None:
    a = task("a1", files=("src/utils.py",))
    b = task("b1", files=("src/utils.py",)).model_copy(update={"repo": "other"})
    assert len(group_tasks([a, b])) == 2
    assert len(group_tasks([a, task("a2", files=("src/utils.py",))])) == 1


def test_one_repository_splits_as_before() -> None:
    """Repository strata change nothing for a one-repository set (the quickstart's figures stay valid)."""
    held = [t.instance_id for t in split_tasks(corpus(), 0.25, seed=0)["heldout"]]
    assert held == HELDOUT_BEFORE_REPOSITORY_STRATA


# The held-out side of corpus() at seed 0 before the split knew about repositories.
HELDOUT_BEFORE_REPOSITORY_STRATA = [
    "f3_b0",
    "f3_b1",
    "f3_b2",
    "f3_b3",
    "f5_b0",
    "f5_b1",
    "f12_b0",
    "f13_b0",
    "f13_b1",
    "f15_b0",
    "f15_b1",
    "f15_b2",
    "f15_b3",
    "f21_b0",
    "f21_b1",
    "f30_b0",
    "f30_b1",
    "f30_b2",
    "f31_b0",
    "f31_b1",
    "f31_b2",
    "f31_b3",
    "f32_b0",
    "f36_b0",
    "combo1",
    "combo3",
    "noent2",
    "noent5",
]


def test_the_kind_in_a_swesmith_id_sets_the_stratum() -> None:
    swap = task("o__r.1234abcd.func_pm_op_swap__abcd1234")
    removal = task("o__r.1234abcd.func_pm_remove_assign__abcd1234")
    assert swap.modifier_kinds == ["func_pm_op_swap"] and swap.invertible
    assert removal.modifier_kinds == ["func_pm_remove_assign"] and not removal.invertible
