"""SWE-smith task instances: the typed record, validation, and loading from JSON/JSONL/parquet/datasets.

A task file is untrusted input (it names paths the sandbox will patch and tests it will run), so every
record is checked before use and every problem names the file, the line (or row), the instance and the
field. Loading never loses a valid record because of a bad neighbour.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

MAX_PATCH_BYTES = 1_000_000
MAX_TESTS = 10_000
MAX_TEST_ID_CHARS = 4096
MAX_PROBLEM_BYTES = 200_000
MAX_RECORD_BYTES = 5_000_000
MAX_ID_CHARS = 256

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
ID_RE = re.compile(rf"^{_NAME}$")
REPO_RE = re.compile(rf"^{_NAME}(/{_NAME})?$")  # SWE-smith uses one namespace: swesmith/owner__repo.sha
IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@\-]*$")  # goes on a docker command line
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_PATCH_PATH_LINE_RE = re.compile(r"^(?:rename|copy) (?:from|to) (.*)$", re.MULTILINE)
_ID_SNIFF_RE = re.compile(r'"instance_id"\s*:\s*"([^"\\]{1,256})"')
COMMIT_RE = re.compile(r"^[0-9a-fA-F]{7,64}$")  # an abbreviated or full git object name (SHA-1 or SHA-256)
# SWE-smith's instance ids end in ".<modifier kind>__<hash>" (bug_gen: f"{repo}.{modifier}__{hash8}").
KIND_IN_ID_RE = re.compile(r"\.(?P<kind>[a-z][a-z0-9_]*?)__(?P<hash>[0-9a-z]{4,40})$")


def kind_from_instance_id(instance_id: str) -> str | None:
    """The SWE-smith modifier kind named in an instance id (``….func_pm_ctrl_invert_if__hvauvyvv``), or None."""
    match = KIND_IN_ID_RE.search(instance_id)
    return match.group("kind") if match else None


# SWE-smith modifier kinds whose edit the repair agents' mutation families can undo (envs/agents/mutate.py).
# Not op_break_chains: it drops an operand, which no mutation restores, like the remove_* and class_rm_* kinds.
INVERTIBLE_KINDS = frozenset(
    {
        "func_pm_op_change",
        "func_pm_flip_operators",
        "func_pm_op_swap",
        "func_pm_op_change_const",
        "func_pm_ctrl_invert_if",
        "func_pm_ctrl_shuffle",
    }
)


class TaskInstance(BaseModel):
    """One SWE-smith row. ``patch`` induces the bug; unknown fields are kept (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    instance_id: str
    repo: str
    # A task known only by id (e.g. from an imported outcome table): no patch or tests, replay only.
    # Declared before the fields whose checks it relaxes (validators see the fields declared earlier).
    replay_only: bool = False
    patch: str
    FAIL_TO_PASS: list[str]
    PASS_TO_PASS: list[str]
    image_name: str  # may be "" for tasks built locally (no docker image)
    problem_statement: str | None = None
    base_commit: str | None = None
    created_at: str | None = None
    # Added by `hrm-spawn tasks build`; other tools keep them as extras.
    modifier_kinds: list[str] = Field(default_factory=list)
    entity: str | None = None  # "path/to/file.py::Qualified.name", the split key
    test_run_s: float | None = None  # wall seconds of one full test run, the cost unit
    split: Literal["train", "heldout"] | None = None  # an explicit split wins over the computed one

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # SWE-smith rows carry the bug's kind only in the instance id: the per-kind reports and the split's
        # strata read modifier_kinds.
        if not data.get("modifier_kinds") and isinstance(data.get("instance_id"), str):
            kind = kind_from_instance_id(data["instance_id"])
            if kind:
                data = {**data, "modifier_kinds": [kind]}
        if data.get("replay_only") is True:
            # no bug patch, no tests: the outcome table is all there is
            data = {"patch": "", "FAIL_TO_PASS": [], "PASS_TO_PASS": [], "image_name": "", **data}
        return data

    @property
    def invertible(self) -> bool:
        """Every edit of the bug is of a kind the mutation agents can undo (no removed code)."""
        return bool(self.modifier_kinds) and all(k in INVERTIBLE_KINDS for k in self.modifier_kinds)

    @field_validator("instance_id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if len(value) > MAX_ID_CHARS:
            raise ValueError(f"longer than {MAX_ID_CHARS} characters")
        if not ID_RE.match(value) or ".." in value:
            raise ValueError(f"{_show(value)} is not a plain identifier (letters, digits, '_', '.', '-')")
        return value

    @field_validator("repo")
    @classmethod
    def _check_repo(cls, value: str) -> str:
        if len(value) > MAX_ID_CHARS or not REPO_RE.match(value) or ".." in value:
            raise ValueError(f"{_show(value)} is not a plain repository name (at most one 'namespace/')")
        return value

    @field_validator("image_name")
    @classmethod
    def _check_image(cls, value: str) -> str:
        if value and (len(value) > MAX_ID_CHARS or not IMAGE_RE.match(value)):
            raise ValueError(f"{_show(value)} is not a docker image name")
        return value

    @property
    def repo_key(self) -> str:
        """The repository's identifier without a namespace (``swesmith/a__b.1234abcd`` -> ``a__b.1234abcd``)."""
        return self.repo.rsplit("/", 1)[-1]

    @field_validator("patch")
    @classmethod
    def _check_patch(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            if value == "" and _replay_only(info):
                return value
            raise ValueError("empty patch")
        if len(value.encode("utf-8", "surrogatepass")) > MAX_PATCH_BYTES:
            raise ValueError(f"patch larger than {MAX_PATCH_BYTES} bytes")
        problem = patch_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _decode_tests(cls, value: Any) -> Any:
        # SWE-bench stores these as JSON-encoded strings; SWE-smith as lists.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"a string that is not a JSON list: {exc.msg}") from None
        return value

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS")
    @classmethod
    def _check_tests(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if info.field_name == "FAIL_TO_PASS" and not value and not _replay_only(info):
            raise ValueError("empty: a task needs at least one failing test")
        if len(value) > MAX_TESTS:
            raise ValueError(f"{len(value)} tests, more than {MAX_TESTS}")
        for i, test in enumerate(value):
            if not test or len(test) > MAX_TEST_ID_CHARS or _CONTROL_RE.search(test):
                raise ValueError(f"test id {i} {_show(test)} is empty, too long or holds control characters")
            if test.startswith("-"):
                # a test runner reads it as an option (pytest: --junitxml=PATH writes a file)
                raise ValueError(
                    f"test id {i} {_show(test)} starts with '-' (a test runner reads it as an option)"
                )
        return value

    @field_validator("base_commit", mode="before")
    @classmethod
    def _blank_commit(cls, value: Any) -> Any:
        return None if value == "" else value  # some exports write "" for "not given"

    @field_validator("base_commit")
    @classmethod
    def _check_commit(cls, value: str | None) -> str | None:
        if value is not None and not COMMIT_RE.match(value):
            raise ValueError(f"{_show(value)} is not a git commit (7 to 64 hex digits)")
        return value

    @field_validator("problem_statement")
    @classmethod
    def _check_statement(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_PROBLEM_BYTES:
            raise ValueError(f"larger than {MAX_PROBLEM_BYTES} bytes")
        return value

    @field_validator("created_at", mode="before")
    @classmethod
    def _date_to_text(cls, value: Any) -> Any:
        # parquet exports of SWE-smith carry a timestamp column
        return value.isoformat() if isinstance(value, (datetime, date)) else value

    @field_validator("test_run_s")
    @classmethod
    def _check_run_s(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ValueError(f"{value} is not a finite number of seconds >= 0")
        return value

    def to_record(self) -> dict[str, Any]:
        """The JSON row: given fields and extras, without defaults that were never set."""
        return self.model_dump(mode="json", exclude_unset=True)


def _replay_only(info: ValidationInfo) -> bool:
    return bool(info.data.get("replay_only"))


def patch_problem(patch: str) -> str | None:
    """Why ``patch`` is not a unified diff confined to the repository, or None if it is fine."""
    try:
        files = PatchSet(patch)
    except UnidiffParseError as exc:
        return f"not a unified diff: {str(exc).strip()}"
    if not files:
        return "not a unified diff: no file headers ('--- a/...' / '+++ b/...')"
    for patched in files:
        src, tgt = patched.source_file, patched.target_file
        if src == "/dev/null" and tgt == "/dev/null":
            return "a file header with /dev/null on both sides"
        for side, raw in (("source", src), ("target", tgt)):
            if raw == "/dev/null":
                continue  # a file addition or deletion
            problem = _path_problem(raw[2:] if raw[:2] in ("a/", "b/") else raw)
            if problem:
                return f"{side} path {_show(raw)} {problem}"
    for raw in _PATCH_PATH_LINE_RE.findall(patch):
        problem = _path_problem(raw.strip())
        if problem:
            return f"rename/copy path {_show(raw)} {problem}"
    return None


def _path_problem(path: str) -> str | None:
    if not path or path.startswith(("/", "~")) or "\\" in path or _CONTROL_RE.search(path):
        return "is not a relative path inside the repository"
    parts = PurePosixPath(path).parts
    if ".." in parts:
        return "leaves the repository ('..')"
    if ".git" in parts:
        return "touches the repository's .git directory"
    return None


def _show(value: Any, limit: int = 80) -> str:
    """A value safe to print on a terminal: control characters escaped, long text cut."""
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "..."
    text = value if len(value) <= limit else value[:limit] + "..."
    return ascii(text) if not text.isprintable() else repr(text)


@dataclass
class TaskProblem:
    """One invalid record. ``line`` is 1-based for JSON/JSONL, the 0-based row for parquet/datasets."""

    file: str
    line: int
    instance_id: str | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        if self.line == 0 and self.instance_id is None and self.field is None:
            return f"{self.file}: {self.reason}"  # the file as a whole (missing, empty, unreadable)
        instance = _show(self.instance_id)[1:-1] if self.instance_id is not None else "<unknown>"
        where = f"field {self.field}" if self.field else "record"
        return f"{self.file}:{self.line}: instance {instance}: {where}: {self.reason}"


class TaskError(ValueError):
    """A task file or record that cannot be used; ``problem`` says where."""

    def __init__(self, problem: TaskProblem):
        super().__init__(str(problem))
        self.problem = problem


@dataclass
class TaskLoadResult:
    tasks: list[TaskInstance] = field(default_factory=list)
    problems: list[TaskProblem] = field(default_factory=list)
    where: dict[str, tuple[str, int]] = field(default_factory=dict)  # instance_id -> (file, line)

    @property
    def ok(self) -> bool:
        return not self.problems


# One raw record: (file label, line or row, the decoded record or a problem found before validation).
_Raw = tuple[str, int, "dict[str, Any] | TaskProblem", int | None]


def load_tasks(path: str | Path, on_error: Literal["skip", "raise"] = "skip") -> TaskLoadResult:
    """Read and validate every record; ``skip`` reports bad ones and keeps the rest, ``raise`` stops at the first."""
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
    result = TaskLoadResult()
    first_seen: dict[str, str] = {}
    for label, line, record, size in _iter_raw(Path(path)):
        problem = record if isinstance(record, TaskProblem) else None
        if problem is None:
            task = validate_record(record, label, line, size)
            if isinstance(task, TaskProblem):
                problem = task
            elif task.instance_id in first_seen:
                problem = TaskProblem(
                    label,
                    line,
                    task.instance_id,
                    "instance_id",
                    f"duplicate instance_id (first at {first_seen[task.instance_id]}; that one is kept)",
                )
            else:
                first_seen[task.instance_id] = f"{label}:{line}"
                result.where[task.instance_id] = (label, line)
                result.tasks.append(task)
        if problem is not None:
            if on_error == "raise":
                raise TaskError(problem)
            result.problems.append(problem)
    if not result.tasks and not result.problems:
        empty = TaskProblem(str(path), 0, None, None, "no task records in this file")
        if on_error == "raise":
            raise TaskError(empty)
        result.problems.append(empty)
    return result


def validate_record(record: Any, file: str, line: int, size: int | None = None) -> TaskInstance | TaskProblem:
    """A TaskInstance, or the problem with this record (the first failing field, others counted)."""
    if not isinstance(record, dict):
        return TaskProblem(file, line, None, None, f"not a JSON object but {type(record).__name__}")
    raw_id = record.get("instance_id")
    instance = raw_id if isinstance(raw_id, str) else None
    size = size if size is not None else len(json.dumps(record, default=str))
    if size > MAX_RECORD_BYTES:
        return TaskProblem(
            file, line, instance, None, f"record of {size} bytes, more than {MAX_RECORD_BYTES}"
        )
    bad_text = _non_utf8_field(record)
    if bad_text:
        return TaskProblem(file, line, instance, bad_text, "not valid UTF-8 text")
    try:
        return TaskInstance.model_validate(record)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        reason = _error_reason(first)
        if len(errors) > 1:
            others = ", ".join(_error_field(e) or "record" for e in errors[1:4])
            reason += f" (also invalid: {others}{', ...' if len(errors) > 4 else ''})"
        return TaskProblem(file, line, instance, _error_field(first), reason)


def _error_field(error: Any) -> str | None:
    loc = error.get("loc") or ()
    return ".".join(str(p) for p in loc) or None


def _error_reason(error: Any) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "missing":
        return "missing required field"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{msg} (got {type(error.get('input')).__name__} {_show(error.get('input'), 40)})"


def _non_utf8_field(record: dict[str, Any]) -> str | None:
    """The first field whose text holds bytes that were not UTF-8 (decoded as surrogates) or lone surrogates."""
    for key, value in record.items():
        values = value if isinstance(value, list) else [value]
        for text in [key, *(v for v in values if isinstance(v, str))]:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return key.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return None


def _iter_raw(path: Path) -> Iterator[_Raw]:
    if path.is_dir():
        yield from _iter_arrow_dir(path)
    elif not path.is_file():
        raise TaskError(TaskProblem(str(path), 0, None, None, "file not found"))
    elif path.suffix == ".parquet":
        yield from _iter_rows(str(path), _parquet_rows(path))
    elif path.suffix in (".jsonl", ".ndjson"):
        yield from _iter_jsonl(str(path), _read_text(path))
    else:
        yield from _iter_json(str(path), _read_text(path))


def _read_text(path: Path) -> str:
    # surrogateescape keeps bad bytes as lone surrogates so the record (and field) holding them is reported
    return path.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")


def _iter_jsonl(label: str, text: str) -> Iterator[_Raw]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        size = len(line.encode("utf-8", "surrogateescape"))
        sniffed = _ID_SNIFF_RE.search(line[:4096])
        instance = sniffed.group(1) if sniffed else None
        if size > MAX_RECORD_BYTES:
            yield (
                label,
                number,
                TaskProblem(
                    label, number, instance, None, f"record of {size} bytes, more than {MAX_RECORD_BYTES}"
                ),
                size,
            )
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            reason = f"invalid or truncated JSON: {exc.msg} (column {exc.colno})"
            yield label, number, TaskProblem(label, number, instance, None, reason), size
            continue
        yield label, number, record, size


def _iter_json(label: str, text: str) -> Iterator[_Raw]:
    """A JSON array (records read one by one, so a truncated tail keeps the ones before), one object, or JSONL."""
    stripped = text.lstrip()
    if not stripped.startswith("["):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":  # "Extra data" means several objects: JSON lines
                yield (
                    label,
                    exc.lineno,
                    TaskProblem(label, exc.lineno, None, None, f"invalid or truncated JSON: {exc.msg}"),
                    None,
                )
                return
            yield from _iter_jsonl(label, text)
            return
        yield label, 1, record, None
        return
    decoder = json.JSONDecoder()
    pos = len(text) - len(stripped) + 1
    while True:
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            sniffed = _ID_SNIFF_RE.search(text, pos, pos + 4096)
            yield (
                label,
                line,
                TaskProblem(
                    label,
                    line,
                    sniffed.group(1) if sniffed else None,
                    None,
                    f"invalid or truncated JSON: {exc.msg} (line {exc.lineno})",
                ),
                None,
            )
            return
        yield label, line, record, None
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            bad = text.count("\n", 0, pos) + 1
            yield (
                label,
                bad,
                TaskProblem(label, bad, None, None, "truncated JSON array: expected ',' or ']'"),
                None,
            )
            return


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _iter_rows(label: str, rows: Iterable[dict[str, Any]]) -> Iterator[_Raw]:
    for index, row in enumerate(rows):
        yield label, index, row, None


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        yield from batch.to_pylist()


def _iter_arrow_dir(path: Path) -> Iterator[_Raw]:
    """A ``datasets`` save_to_disk directory (one dataset or a DatasetDict), or a folder of arrow/parquet files."""
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        try:
            from datasets import Dataset, load_from_disk
        except ImportError:
            pass  # fall through: the arrow files can be read with pyarrow alone
        else:
            loaded = load_from_disk(str(path))
            splits = {"": loaded} if isinstance(loaded, Dataset) else dict(loaded)
            for name, dataset in splits.items():
                yield from _iter_rows(f"{path}[{name}]" if name else str(path), iter(dataset))
            return
    files = sorted(path.rglob("*.arrow")) + sorted(path.rglob("*.parquet"))
    if not files:
        raise TaskError(
            TaskProblem(str(path), 0, None, None, "directory holds no datasets arrow or parquet files")
        )
    for file in files:
        rows = _parquet_rows(file) if file.suffix == ".parquet" else _arrow_rows(file)
        yield from _iter_rows(str(file), rows)


def _arrow_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)  # what datasets writes
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield from reader.get_batch(i).to_pylist()
            return
        for batch in reader:
            yield from batch.to_pylist()


def save_tasks(tasks: Iterable[TaskInstance], path: str | Path) -> Path:
    """Write JSONL atomically: a reader sees the old file or the complete new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for task in tasks:
                out.write(json.dumps(task.to_record(), ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes it 0600: a task file is data others read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _file_mode(path: Path) -> int:
    """The mode ``path`` has (a rewrite keeps it), else what a plain ``open`` would give (0666 - umask)."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def apply_problems(result: TaskLoadResult, repos_root: Path | None = None) -> list[TaskProblem]:
    """Dry-run every valid task's patch on its built repository at its base commit (``tasks check --apply``):
    a patch that does not apply is reported here, not by every job that would run it later."""
    from hrm_spawn.envs.repos import RepoEnv, patch_check

    problems = []
    for task in result.tasks:
        if task.replay_only:
            continue  # nothing to apply
        file, line = result.where.get(task.instance_id, ("?", 0))
        try:
            env = RepoEnv.load(task.repo, repos_root)
        except (FileNotFoundError, ValueError) as exc:
            problems.append(TaskProblem(file, line, task.instance_id, "repo", str(exc)))
            continue
        found = patch_check(env, env.resolve_commit(task.base_commit), task.patch)
        if found:
            problems.append(TaskProblem(file, line, task.instance_id, *found))
    return problems


def cli_check(args: argparse.Namespace) -> int:
    """``hrm-spawn tasks check FILE [--fail-fast] [--apply]``: one line per bad record, a summary, exit 0 only
    if all valid; ``--apply`` also dry-runs every patch against the built repository."""
    fail_fast = getattr(args, "fail_fast", False)
    try:
        result = load_tasks(args.file, on_error="raise" if fail_fast else "skip")
    except TaskError as exc:  # the first bad record with --fail-fast, or a file that cannot be read at all
        print(exc)
        print("stopped at the first problem" if fail_fast else "no records read")
        return 1
    problems = list(result.problems)
    if getattr(args, "apply", False):
        applied = apply_problems(result)
        if applied and fail_fast:
            print(applied[0])
            print("stopped at the first problem")
            return 1
        problems += applied
    for problem in sorted(problems, key=lambda p: p.line):  # in file order, whichever check found it
        print(problem)
    bad = {(p.file, p.line) for p in problems}
    print(f"{len(result.tasks) + len(result.problems) - len(bad)} valid, {len(bad)} invalid")
    return 0 if not problems else 1
