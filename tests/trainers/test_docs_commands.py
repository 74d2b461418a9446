"""Every ``hrm-spawn ...`` command shown in README.md and docs/*.md exists with the options shown.

Each documented command's ``--help`` runs; every option it shows must be one of that command's
options; a concrete example (no placeholders such as FILE or [--seed S]) must parse as written.
Nothing is executed beyond parsing, so the check is fast and needs no data.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from hrm_spawn.trainers.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_INVOCATION = re.compile(r"(?:^|[\s`$(])(?:\.venv/bin/)?hrm-spawn\s+(.*)")


def _code_text(markdown: str) -> list[str]:
    """Lines of fenced code blocks (continuations joined) and inline code spans."""
    out, fenced, pending = [], False, ""
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            out.append(pending + line)
            pending = ""
        else:
            out += re.findall(r"`([^`]+)`", line)
    return out


def documented_commands() -> list[tuple[str, str]]:
    """(where, the words after ``hrm-spawn``) for every invocation in the docs."""
    found = []
    for doc in DOCS:
        for text in _code_text(doc.read_text(encoding="utf-8")):
            for match in _INVOCATION.finditer(text):
                # a comment, an arrow or a parenthesised note ends the command
                words = re.split(r"\s#|\s->|\s\(|\s\|\s(?!-)", match[1])[0].strip()
                if re.match(r"[\w-]+:", words):  # "hrm-spawn train: error: ...": output, not a command
                    continue
                found.append((f"{doc.relative_to(ROOT)}: hrm-spawn {words}", words))
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _leaf(words: list[str]) -> tuple[list[str], argparse.ArgumentParser, list[str]]:
    """The sub-command path, its parser and the remaining words."""
    parser, path = build_parser(), []
    while words and (words[0] in _subparsers(parser) or words[0] in ("-v", "-vv", "-q", "-qq")):
        if words[0].startswith("-"):  # global flags before the sub-command
            words.pop(0)
            continue
        parser = _subparsers(parser)[words[0]]
        path.append(words.pop(0))
    return path, parser, words


def _concrete(words: list[str]) -> bool:
    return not any(re.search(r"[\[\]]|\.\.\.|^[A-Z][A-Z_]+$|^<", w) for w in words)


COMMANDS = documented_commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 30  # the scan itself works


@pytest.mark.parametrize(("where", "words"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_exists_with_its_options(where: str, words: str, capsys) -> None:
    argv = shlex.split(words.replace("[", " [ ").replace("]", " ] ").replace("|", " "))
    path, parser, rest = _leaf(list(argv))
    assert path or rest[:1] in (["--help"], ["--version"]), f"{where}: not an hrm-spawn command"
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    capsys.readouterr()
    known = set(parser._option_string_actions)
    shown = {w.split("=")[0] for w in rest if w.startswith("-")}
    assert shown <= known, f"{where}: options not accepted: {sorted(shown - known)}"
    if rest and _concrete(argv) and not {"--help", "--version"} & set(rest):  # a full example: parses
        build_parser().parse_args(argv)
