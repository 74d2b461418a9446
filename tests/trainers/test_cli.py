"""The command line: --help on every level, doctor, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hrm_spawn.trainers.cli import build_parser, main

LEVELS = [
    [],
    ["tasks"],
    ["tasks", "check"],
    ["tasks", "build"],
    ["tasks", "split"],
    ["collect"],
    ["env"],
    ["env", "check"],
    ["policy"],
    ["policy", "summary"],
    ["train"],
    ["eval"],
    ["quickstart"],
    ["doctor"],
]


@pytest.mark.parametrize("words", LEVELS, ids=lambda w: " ".join(w) or "top")
def test_help_on_every_level(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*words, "--help"])
    assert exc.value.code == 0
    assert "usage: hrm-spawn" in capsys.readouterr().out


def test_doctor_prints_the_machine_table(hrm_home, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    rows = ("Python", "torch", "CUDA", "flash-attn", "Docker", "swe-rex", "swesmith", "Ray", "mini-swe-agent")
    for row in rows + ("docker sandbox images",):
        assert row in out


def test_console_script_runs() -> None:
    exe = [sys.executable, "-m", "hrm_spawn.trainers.cli", "--help"]
    out = subprocess.run(exe, capture_output=True, text=True, check=True).stdout
    assert "quickstart" in out and "doctor" in out


def test_errors_are_one_line_and_nonzero(hrm_home, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "summary", "no/such/preset"]) == 2
    assert "config not found: no/such/preset" in capsys.readouterr().err


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _all_levels(parser=None, words=()) -> list[list[str]]:
    """Every command path of the parser as built now (commands added later are included)."""
    parser = parser or build_parser()
    found = [list(words)]
    for name, child in _subparsers(parser).items():
        found += _all_levels(child, (*words, name))
    return found


def test_the_level_list_is_complete() -> None:
    assert {tuple(w) for w in LEVELS} <= {tuple(w) for w in _all_levels()}


@pytest.mark.parametrize("words", _all_levels(), ids=lambda w: " ".join(w) or "top")
def test_every_help_ends_with_examples_that_parse(words: list[str], capsys) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([*words, "--help"])
    help_text = capsys.readouterr().out
    assert "examples:\n  hrm-spawn " in help_text
    examples = [line.strip() for line in help_text.split("examples:\n", 1)[1].splitlines() if line.strip()]
    for example in examples:  # each example is a command this parser accepts
        argv = example.split("#")[0].split()[1:]
        if "--help" not in argv:
            build_parser().parse_args(argv)


def test_a_mistyped_subcommand_gets_a_suggestion(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["trian"])
    assert exc.value.code == 2
    assert "did you mean 'train'?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tasks", "chek", "x.jsonl"])
    assert "did you mean 'check'?" in capsys.readouterr().err


def test_version(capsys) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"hrm-spawn {version('hrm-spawn')}"


def test_train_without_arguments_names_the_presets(hrm_home, capsys) -> None:
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert "trainers/act_q" in err and "trainers/ppo" in err and "env.tasks=" in err


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "env.taks=x.jsonl",
            "command line 'env.taks=x.jsonl': unknown key 'env.taks' (did you mean 'env.tasks'?)",
        ),
        ("tasks=x.jsonl", "command line 'tasks=x.jsonl': unknown key 'tasks' (did you mean 'env.tasks'?)"),
        ("act_q.lrr=0.1", "command line 'act_q.lrr=0.1': unknown key 'act_q.lrr' (did you mean 'act_q.lr'?)"),
        ("env.mode=rply", "command line 'env.mode=rply': key 'env.mode': Input should be"),
        ("env.tasks=no/such.jsonl", "command line: env.tasks: no/such.jsonl does not exist"),
    ],
)
def test_train_validates_everything_before_writing(hrm_home, tmp_path, capsys, override, expected) -> None:
    run = tmp_path / "run"
    assert main(["train", "trainers/act_q", override, "--out", str(run)]) == 2
    assert expected in capsys.readouterr().err
    assert not run.exists() and not (hrm_home / "runs").exists()


def test_train_names_the_file_for_a_bad_key_in_it(hrm_home, tmp_path, capsys) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("algo: act_q\nenv:\n  tasks: t.jsonl\n  mdoe: replay\n")
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{config}: unknown key 'env.mdoe' (did you mean 'env.mode'?)" in err


def test_train_without_tasks_suggests_the_key_that_works(hrm_home, capsys) -> None:
    assert main(["train", "trainers/act_q"]) == 2
    assert "add env.tasks=PATH/TO/tasks.jsonl" in capsys.readouterr().err


def test_documented_options_exist() -> None:
    args = build_parser().parse_args(["env", "check", "HRMSpawn/SWESmith-v0", "--steps", "5", "mode=replay"])
    assert args.steps == 5 and args.overrides == ["mode=replay"]
    args = build_parser().parse_args(["policy", "summary", "policy/hrm-tiny", "--agents", "3"])
    assert args.agents == 3


def test_policy_summary_agents_sets_the_action_count(hrm_home, capsys) -> None:
    import json

    assert main(["policy", "summary", "policy/hrm-tiny", "--agents", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["num_actions"] == 7


def test_verbosity_flags_before_and_after_the_subcommand() -> None:
    assert build_parser().parse_args(["-v", "doctor"]).verbose == 1
    args = build_parser().parse_args(["doctor", "-qq"])
    assert args.quiet == 2 and args.verbose == 0


def test_a_reader_that_closes_early_is_not_an_error():
    """`hrm-spawn agents | head -1` used to print 'error: [Errno 32] Broken pipe'."""
    import os

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from hrm_spawn.trainers.cli import main; sys.exit(main(['agents']))",
            ],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert proc.returncode == 141
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "env.agents=[op-flop]",
            "command line 'env.agents=[op-flop]': env.agents: unknown agent 'op-flop' (did you mean 'op-flip'?)",
        ),
        (
            "env.store=no/such.sqlite",
            "command line 'env.store=no/such.sqlite': env.store: no/such.sqlite does not exist",
        ),
    ],
)
def test_train_checks_agents_and_the_replay_store_before_writing(
    hrm_home, tmp_path, capsys, override, expected
) -> None:
    """Both used to fail only after the run directory and its config.yaml were written."""
    tasks = tmp_path / "t.jsonl"
    tasks.write_text('{"instance_id": "a__b-1", "repo": "a/b", "replay_only": true}\n')
    store = tmp_path / "s.sqlite"
    store.write_bytes(b"")
    run = tmp_path / "run"
    argv = [
        "train",
        "trainers/act_q",
        f"env.tasks={tasks}",
        "env.mode=replay",
        f"env.store={store}",
        override,
    ]
    assert main([*argv, "--out", str(run)]) == 2
    assert expected in capsys.readouterr().err
    assert not run.exists() and not (hrm_home / "runs").exists()


@pytest.mark.parametrize(
    ("argv", "command", "meant"),
    [
        (["env", "check", "HRMSpawn/SWESmith-v0", "--stpes", "3"], "env check", "--steps"),
        (
            ["store", "import", "t.csv", "--format", "csv", "--store", "s", "--agentmap", "a=b"],
            "store import",
            "--agent-map",
        ),
        (["tasks", "check", "t.jsonl", "--fail_fast"], "tasks check", "--fail-fast"),
    ],
)
def test_a_mistyped_option_names_the_command_and_the_option_meant(capsys, argv, command, meant) -> None:
    """It used to be the top-level usage and 'unrecognized arguments', with no hint."""
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"hrm-spawn {command}: error: unrecognized arguments: " in err
    assert f"(did you mean '{meant}'?)" in err


def test_a_broken_pipe_elsewhere_is_still_an_error(monkeypatch, capsys) -> None:
    """Only a closed stdout ends quietly: a sandbox connection that breaks is reported."""
    import hrm_spawn.envs.agents.registry as registry

    def broken(args):  # noqa: ARG001
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(registry, "cli_agents", broken)
    assert main(["agents"]) == 2
    assert "hrm-spawn agents: error: [Errno 32] Broken pipe" in capsys.readouterr().err
