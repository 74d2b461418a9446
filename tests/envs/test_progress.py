"""The progress helper: a dozen plain lines when not on a terminal, never carriage-return frames."""

from __future__ import annotations

import io
import re

from hrm_spawn.envs.progress import progress


def test_plain_lines_at_each_tenth_when_not_a_terminal() -> None:
    out = io.StringIO()
    with progress("act_q", total=300, stream=out, unit="it") as bar:
        for i in range(300):
            bar.update(1, loss=1.0 / (i + 1))
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    counts = [int(re.match(r"act_q: (\d+)/300 it \(\d+ s\)", line)[1]) for line in lines]
    assert counts == list(range(0, 301, 30))
    assert lines[-1].endswith("loss=0.003333")


def test_resume_from_initial_and_unknown_total() -> None:
    out = io.StringIO()
    with progress("collect", total=10, initial=7, stream=out) as bar:
        bar.update(3)
    assert [line.split(" (")[0] for line in out.getvalue().splitlines()] == [
        "collect: 7/10",
        "collect: 10/10",  # one jump of 3: one line
    ]
    out = io.StringIO()
    with progress("build", total=None, stream=out) as bar:
        for _ in range(50):
            bar.update()
    assert [line.split(" (")[0] for line in out.getvalue().splitlines()] == ["build: 0", "build: 50"]


def test_disabled_prints_nothing() -> None:
    out = io.StringIO()
    with progress("x", total=5, enabled=False, stream=out) as bar:
        bar.update(5)
    assert out.getvalue() == "" and bar.done == 5


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_rich_bar() -> None:
    out = _Terminal()
    with progress("eval", total=4, stream=out) as bar:
        for _ in range(4):
            bar.update(1, reward=0.5)
    text = out.getvalue()
    assert "eval" in text and "4/4" in text and "reward=0.5" in text
