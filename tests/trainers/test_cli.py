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
    for row in ("Python", "torch", "CUDA", "flash-attn", "Docker", "swe-rex", "swesmith", "Ray"):
        assert row in out


def test_console_script_runs() -> None:
    exe = [sys.executable, "-m", "hrm_spawn.trainers.cli", "--help"]
    out = subprocess.run(exe, capture_output=True, text=True, check=True).stdout
    assert "quickstart" in out and "doctor" in out


def test_errors_are_one_line_and_nonzero(hrm_home, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "summary", "no/such/preset"]) == 2
    assert "config not found: no/such/preset" in capsys.readouterr().err
