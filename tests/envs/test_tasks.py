"""Task records: validation of every malformed case, loading from each format, the check command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from hrm_spawn.envs.tasks import (
    MAX_PATCH_BYTES,
    MAX_PROBLEM_BYTES,
    MAX_RECORD_BYTES,
    MAX_TESTS,
    TaskError,
    TaskInstance,
    cli_check,
    load_tasks,
    save_tasks,
)

PATCH = (
    "diff --git a/pkg/mod.py b/pkg/mod.py\n"
    "--- a/pkg/mod.py\n"
    "+++ b/pkg/mod.py\n"
    "@@ -1,3 +1,3 @@\n"
    " def add(a, b):\n"
    "-    return a + b\n"
    "+    return a - b\n"
    " \n"
)


@pytest.fixture(autouse=True)
def _home(hrm_home: Path) -> None:
    """Every test gets its own HRM_SPAWN_HOME (conftest's hrm_home)."""


def record(instance_id: str = "pkg__pkg.1.func_pm_op_flip__ab12", **over: object) -> dict:
    base = {
        "instance_id": instance_id,
        "repo": "swesmith/pkg__pkg.1",
        "patch": PATCH,
        "FAIL_TO_PASS": ["tests/test_mod.py::test_add"],
        "PASS_TO_PASS": ["tests/test_mod.py::test_sub"],
        "image_name": "jyangballin/swesmith.x86_64.pkg_1234.1",
        "problem_statement": None,
    }
    base.update(over)
    return base


def patch_with(src: str, tgt: str, header: str | None = None) -> str:
    head = header if header is not None else f"diff --git {src} {tgt}\n"
    return head + f"--- {src}\n+++ {tgt}\n@@ -1 +1 @@\n-a\n+b\n"


def write_jsonl(path: Path, lines: list[bytes | str | dict]) -> Path:
    out = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        out += (line.encode() if isinstance(line, str) else line) + b"\n"
    path.write_bytes(out)
    return path


def big_statement() -> str:
    return "x" * (MAX_PROBLEM_BYTES + 1)


# (bad JSONL line, instance the message names, field it names, words of the reason)
BAD_LINES = {
    "missing field": (
        json.dumps({k: v for k, v in record("bad").items() if k != "repo"}),
        "bad",
        "repo",
        "missing",
    ),
    "missing patch": (
        json.dumps({k: v for k, v in record("bad").items() if k != "patch"}),
        "bad",
        "patch",
        "missing",
    ),
    "wrong type list": (json.dumps(record("bad", FAIL_TO_PASS=5)), "bad", "FAIL_TO_PASS", "valid list"),
    "wrong type test id": (
        json.dumps(record("bad", PASS_TO_PASS=["ok", 3])),
        "bad",
        "PASS_TO_PASS.1",
        "valid string",
    ),
    "wrong type id": (json.dumps(record(17)), "<unknown>", "instance_id", "valid string"),
    "empty patch": (json.dumps(record("bad", patch="  \n")), "bad", "patch", "empty patch"),
    "not a diff": (json.dumps(record("bad", patch="just words\n")), "bad", "patch", "not a unified diff"),
    "hunk without header": (
        json.dumps(record("bad", patch="@@ -1 +1 @@\n-a\n+b\n")),
        "bad",
        "patch",
        "not a unified diff",
    ),
    "empty F2P": (
        json.dumps(record("bad", FAIL_TO_PASS=[])),
        "bad",
        "FAIL_TO_PASS",
        "at least one failing test",
    ),
    "empty F2P string": (json.dumps(record("bad", FAIL_TO_PASS="[]")), "bad", "FAIL_TO_PASS", "at least one"),
    "F2P bad JSON string": (
        json.dumps(record("bad", FAIL_TO_PASS="[oops")),
        "bad",
        "FAIL_TO_PASS",
        "not a JSON list",
    ),
    "test id newline": (
        json.dumps(record("bad", FAIL_TO_PASS=["a\nb"])),
        "bad",
        "FAIL_TO_PASS",
        "control characters",
    ),
    "id dotdot": (json.dumps(record("../etc")), "../etc", "instance_id", "not a plain identifier"),
    "id slash": (json.dumps(record("a/b")), "a/b", "instance_id", "not a plain identifier"),
    "id shell": (json.dumps(record("x;rm -rf ~")), "x;rm -rf ~", "instance_id", "not a plain identifier"),
    "id subst": (json.dumps(record("$(reboot)")), "$(reboot)", "instance_id", "not a plain identifier"),
    "id too long": (json.dumps(record("a" * 300)), "a" * 80, "instance_id", "longer than 256"),
    "repo dotdot": (json.dumps(record("bad", repo="../../x")), "bad", "repo", "not a plain repository"),
    "repo absolute": (json.dumps(record("bad", repo="/etc")), "bad", "repo", "not a plain repository"),
    "image shell": (
        json.dumps(record("bad", image_name="img; curl x|sh")),
        "bad",
        "image_name",
        "docker image",
    ),
    "patch dotdot": (
        json.dumps(record("bad", patch=patch_with("a/../evil.py", "b/../evil.py"))),
        "bad",
        "patch",
        "leaves the repository",
    ),
    "patch absolute": (
        json.dumps(record("bad", patch=patch_with("/etc/passwd", "/etc/passwd", ""))),
        "bad",
        "patch",
        "not a relative path",
    ),
    "patch git dir": (
        json.dumps(record("bad", patch=patch_with("a/.git/hooks/pre-commit", "b/.git/hooks/pre-commit"))),
        "bad",
        "patch",
        ".git",
    ),
    "patch rename out": (
        json.dumps(
            record(
                "bad",
                patch="diff --git a/x.py b/y.py\nsimilarity index 100%\nrename from x.py\n"
                "rename to ../y.py\n",
            )
        ),
        "bad",
        "patch",
        "leaves the repository",
    ),
    "patch both null": (
        json.dumps(record("bad", patch=patch_with("/dev/null", "/dev/null", ""))),
        "bad",
        "patch",
        "/dev/null on both",
    ),
    "patch too big": (
        json.dumps(record("bad", patch=PATCH + "+" * MAX_PATCH_BYTES)),
        "bad",
        "patch",
        f"larger than {MAX_PATCH_BYTES}",
    ),
    "too many tests": (
        json.dumps(record("bad", PASS_TO_PASS=[f"t::{i}" for i in range(MAX_TESTS + 1)])),
        "bad",
        "PASS_TO_PASS",
        f"more than {MAX_TESTS}",
    ),
    "statement too big": (
        json.dumps(record("bad", problem_statement=big_statement())),
        "bad",
        "problem_statement",
        f"larger than {MAX_PROBLEM_BYTES}",
    ),
    "record too big": (
        json.dumps(record("bad", notes="y" * MAX_RECORD_BYTES)),
        "bad",
        None,
        f"more than {MAX_RECORD_BYTES}",
    ),
    "truncated JSON": (json.dumps(record("bad"))[:150], "bad", None, "truncated JSON"),
    "not an object": ("[1, 2]", "<unknown>", None, "not a JSON object"),
    "non-UTF-8 bytes": (
        json.dumps(record("bad", problem_statement="caf_")).encode().replace(b"caf_", b"caf\xe9"),
        "bad",
        "problem_statement",
        "not valid UTF-8",
    ),
    "lone surrogate": (
        json.dumps(record("bad", problem_statement="\udc80")),
        "bad",
        "problem_statement",
        "not valid UTF-8",
    ),
    "bad split": (json.dumps(record("bad", split="test")), "bad", "split", "'train' or 'heldout'"),
    "negative run time": (json.dumps(record("bad", test_run_s=-1.0)), "bad", "test_run_s", "finite number"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_record_is_reported_with_file_line_instance_field(tmp_path: Path, case: str) -> None:
    bad, instance, field, reason = BAD_LINES[case]
    path = write_jsonl(tmp_path / "tasks.jsonl", [record("first"), bad, record("third")])
    result = load_tasks(path)
    # the valid neighbours survive, including the one after a truncated line
    assert [t.instance_id for t in result.tasks] == ["first", "third"]
    assert len(result.problems) == 1
    problem = result.problems[0]
    message = str(problem)
    assert message.startswith(f"{path}:2: instance {instance}")
    assert (problem.file, problem.line, problem.field) == (str(path), 2, field)
    assert (f"field {field}:" if field else "record:") in message
    assert reason in message


def test_raise_stops_at_the_first_problem(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [record("ok"), record("../x"), record("also", patch="")])
    with pytest.raises(TaskError) as info:
        load_tasks(path, on_error="raise")
    assert info.value.problem.line == 2
    assert "instance ../x: field instance_id" in str(info.value)


def test_duplicate_keeps_the_first(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [record("a", entity="x"), record("b"), record("a", entity="y")])
    result = load_tasks(path)
    assert [(t.instance_id, t.entity) for t in result.tasks] == [("a", "x"), ("b", None)]
    assert str(result.problems[0]) == (
        f"{path}:3: instance a: field instance_id: duplicate instance_id (first at {path}:1; that one is kept)"
    )


def test_invalid_first_copy_does_not_hide_a_valid_duplicate(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [record("a", patch=""), record("a")])
    result = load_tasks(path)
    assert [t.instance_id for t in result.tasks] == ["a"]
    assert [p.line for p in result.problems] == [1]


def test_fields_decoded_and_extras_kept() -> None:
    task = TaskInstance.model_validate(
        record(
            FAIL_TO_PASS='["t::a", "t::b"]',
            PASS_TO_PASS="[]",
            image_name="",
            modifier_kinds=["op_flip"],
            entity="pkg/mod.py::add",
            test_run_s=0.4,
            bug_kind="custom",
            nested={"k": [1]},
        )
    )
    assert task.FAIL_TO_PASS == ["t::a", "t::b"] and task.PASS_TO_PASS == []
    assert task.bug_kind == "custom" and task.nested == {"k": [1]}
    assert task.to_record()["bug_kind"] == "custom"
    assert "split" not in task.to_record()  # defaults never given are not written back


def test_added_and_deleted_files_are_fine() -> None:
    add = (
        "diff --git a/new.py b/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+x\n"
    )
    delete = "diff --git a/old.py b/old.py\ndeleted file mode 100644\n--- a/old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
    assert TaskInstance.model_validate(record(patch=add + delete)).patch.startswith("diff")


def test_json_array_round_trip_and_lines(tmp_path: Path) -> None:
    tasks = [TaskInstance.model_validate(record(f"t{i}", entity=f"m.py::f{i}")) for i in range(3)]
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([t.to_record() for t in tasks], indent=2))
    result = load_tasks(path)
    assert result.ok and result.tasks == tasks
    # one record per object: a bad one is reported on the line it starts on
    rows = [t.to_record() for t in tasks]
    rows[1]["FAIL_TO_PASS"] = []
    path.write_text(json.dumps(rows, indent=2))
    result = load_tasks(path)
    start = path.read_text().splitlines().index("  {", 2) + 1
    assert [p.line for p in result.problems] == [start]
    assert [t.instance_id for t in result.tasks] == ["t0", "t2"]


def test_truncated_json_array_keeps_records_before(tmp_path: Path) -> None:
    text = json.dumps([record("t0"), record("t1")], indent=1)
    path = tmp_path / "tasks.json"
    path.write_text(text[: len(text) - 40])
    result = load_tasks(path)
    assert [t.instance_id for t in result.tasks] == ["t0"]
    assert "instance t1" in str(result.problems[0]) and "truncated" in str(result.problems[0])


def test_single_object_json_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps(record("solo"), indent=2))
    assert [t.instance_id for t in load_tasks(path).tasks] == ["solo"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert "no task records" in str(load_tasks(empty).problems[0])
    with pytest.raises(TaskError, match="missing.jsonl: file not found"):
        load_tasks(tmp_path / "missing.jsonl")


def test_save_tasks_is_atomic_and_round_trips(tmp_path: Path) -> None:
    tasks = [TaskInstance.model_validate(record(f"t{i}", problem_statement="é ✓")) for i in range(3)]
    path = save_tasks(tasks, tmp_path / "out" / "tasks.jsonl")
    assert load_tasks(path).tasks == tasks
    assert [p.name for p in path.parent.iterdir()] == ["tasks.jsonl"]  # no temporary left behind

    class Boom(Exception):
        pass

    def exploding():
        yield tasks[0]
        raise Boom

    with pytest.raises(Boom):
        save_tasks(exploding(), path)
    assert load_tasks(path).tasks == tasks  # the old file is intact
    assert [p.name for p in path.parent.iterdir()] == ["tasks.jsonl"]


def test_parquet_round_trip_and_row_index(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [record(f"t{i}", FAIL_TO_PASS=json.dumps(["a::b"])) for i in range(4)]
    rows[2]["instance_id"] = "bad id"
    path = tmp_path / "tasks.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    result = load_tasks(path)
    assert [t.instance_id for t in result.tasks] == ["t0", "t1", "t3"]
    assert result.tasks[0].FAIL_TO_PASS == ["a::b"]
    assert str(result.problems[0]).startswith(f"{path}:2: instance bad id: field instance_id")


def test_datasets_save_to_disk_round_trip(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = [record(f"t{i}") for i in range(3)]
    rows[1]["patch"] = ""
    one = tmp_path / "ds"
    datasets.Dataset.from_list(rows).save_to_disk(str(one))
    result = load_tasks(one)
    assert [t.instance_id for t in result.tasks] == ["t0", "t2"]
    assert str(result.problems[0]).startswith(f"{one}:1: instance t1: field patch: empty patch")

    both = tmp_path / "dd"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows[:1]), "test": datasets.Dataset.from_list(rows[2:])}
    ).save_to_disk(str(both))
    assert sorted(t.instance_id for t in load_tasks(both).tasks) == ["t0", "t2"]

    # a folder with only the arrow files (as in a datasets cache) is read with pyarrow
    bare = tmp_path / "cache"
    bare.mkdir()
    for arrow in one.glob("*.arrow"):
        (bare / arrow.name).write_bytes(arrow.read_bytes())
    assert [t.instance_id for t in load_tasks(bare).tasks] == ["t0", "t2"]


def test_cli_check_output_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [record("a"), record("b")])
    assert cli_check(argparse.Namespace(file=str(good), fail_fast=False)) == 0
    assert capsys.readouterr().out == "2 valid, 0 invalid\n"

    bad = write_jsonl(tmp_path / "bad.jsonl", [record("a"), record("b", patch=""), "{", record("c")])
    assert cli_check(argparse.Namespace(file=str(bad), fail_fast=False)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{bad}:2: instance b: field patch: empty patch"
    assert lines[1].startswith(f"{bad}:3: instance <unknown>: record: invalid or truncated JSON")
    assert lines[2] == "2 valid, 2 invalid"

    assert cli_check(argparse.Namespace(file=str(bad), fail_fast=True)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{bad}:2: instance b: field patch: empty patch", "stopped at the first problem"]


def test_saved_task_files_are_readable_like_any_other_file(tmp_path: Path) -> None:
    """mkstemp's 0600 used to reach the task file: other users (a CI runner, a shared data dir) could not read it."""
    import os

    task = TaskInstance.model_validate(record("t0"))
    old = os.umask(0o022)
    try:
        fresh = save_tasks([task], tmp_path / "fresh.jsonl")
    finally:
        os.umask(old)
    assert fresh.stat().st_mode & 0o777 == 0o644
    fresh.chmod(0o640)
    save_tasks([task], fresh)  # a rewrite keeps the mode the file had
    assert fresh.stat().st_mode & 0o777 == 0o640
