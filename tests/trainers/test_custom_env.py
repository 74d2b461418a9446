"""docs/custom-envs.md as written: the in-memory toy env trains and evaluates through the command line."""

from __future__ import annotations

import json
from pathlib import Path

from hrm_spawn.trainers.cli import main

ROOT = Path(__file__).resolve().parents[2]
TOY = "tests/envs/custom_env_example.py:ToyTasksEnv"
# the commands of docs/custom-envs.md ("Train and evaluate it"), run from the checkout's root
TRAIN = (
    f"train trainers/act_q env_id={TOY} env_args.num_tasks=8 act_q.iterations=2 act_q.num_envs=4 "
    "act_q.updates=1 device=cpu --out {run}"
)
EVAL = "eval {run} --split heldout --lambda 0.02 --out {out}"


def test_the_documented_commands_appear_in_the_doc() -> None:
    doc = (ROOT / "docs" / "custom-envs.md").read_text(encoding="utf-8")
    assert "hrm-spawn " + TRAIN.format(run="runs/toy") in doc
    assert "hrm-spawn " + EVAL.format(run="runs/toy", out="runs/toy-eval") in doc


def test_custom_env_trains_and_evaluates(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    run, out = tmp_path / "run", tmp_path / "eval"
    assert main(TRAIN.format(run=run).split()) == 0, capsys.readouterr().err
    assert main(EVAL.format(run=run, out=out).split()) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["env_id"] == TOY and report["meta"]["agents"] == ["quick", "careful", "thorough"]
    # the split applies to the toy's in-memory tasks: held-out tasks only, none of the training ones
    assert (
        0 < report["meta"]["num_tasks"] < 8
        and report["meta"]["num_tasks"] + report["meta"]["num_train_tasks"] == 8
    )
    assert {"hrm", "oracle", "spawn_all"} <= set(report["policies"])


def test_an_existing_run_directory_is_refused_before_anything_is_written(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("")
    from hrm_spawn.envs.store import OutcomeStore

    store = tmp_path / "s.sqlite"
    OutcomeStore(store).close()
    argv = ["train", "trainers/act_q", f"env.tasks={tasks}", f"env.store={store}", "--out", str(run)]
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err and sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    assert main(["train", "trainers/act_q", "env.taks=x", "--out", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()
