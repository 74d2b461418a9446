"""Outcome tables from other harnesses -> replay outcomes in an OutcomeStore.

Public leaderboards and trajectory sets publish, per task and per agent, whether the task was resolved,
what the run cost and how many steps it took. ``hrm-spawn store import`` turns such a table into
outcomes a spawn policy can be trained and judged on in replay:

* **formats**: ``jsonl`` and ``csv`` (one record per task x agent), ``leaderboard`` (the nested JSON
  leaderboards publish: agent -> task id -> fields, or -> a bare resolved flag), ``mini-swe-agent`` (a
  batch run's output folder: ``preds.json`` and ``<id>/<id>.traj.json``, with the resolved ids from
  swebench's evaluation report, ``--report``);
* **fields** (other spellings in ``FIELD_ALIASES``): ``instance_id``, ``agent``, ``resolved``, and
  optionally ``pass_fraction``, ``cost_usd``, ``tokens_in``/``tokens_out``, ``steps``, ``patch``,
  ``repo``, ``seed``; ``--columns field=column,...`` names the column of a field that no alias matches
  (``task=metadata.instance_id``; csv and jsonl);
* **agents**: ``--agent-map raw=name[@version],...`` (or a JSON/YAML file) names the agents in the store;
  with a map only the mapped agents are imported. The version defaults to ``imported``;
* **cost unit**: one per store, kept in its metadata (``usd`` when the table has dollar costs, else
  ``tokens``), so λ keeps its meaning; a table in another unit than the store's is refused, and so is
  importing into a store of runs collected here (``test_runs``). A table with steps and no cost gets
  dollars from ``--price-per-step raw=USD,...`` (cost = steps x the agent's price; the store's metadata
  ``cost_basis`` says so);
* **tasks**: a task known only by id is written as a ``replay_only`` task (no patch, no tests) to the
  task file the env reads; a task found in ``--tasks`` keeps its row (and its problem text). With
  ``--task-text repo`` an id-only task's problem text is its repository (``Repository owner/name.``):
  what a policy can see of the task before it spawns (the env's tokens are the problem text).

What an imported run leaves for the policy to see is nothing but its cost: ``visible_pass_rate`` is 0
and the resolved flag is the hidden evaluation (the env decides whether a verifier reveals it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrm_spawn.envs.results import AgentResult, Cost, Evaluation
from hrm_spawn.envs.store import DEFAULT_COST_UNIT, Outcome, OutcomeKey, OutcomeStore
from hrm_spawn.envs.tasks import ID_RE, TaskInstance, load_tasks, save_tasks

FORMATS = ("jsonl", "csv", "leaderboard", "mini-swe-agent")
DEFAULT_VERSION = "imported"
PASS_SCALE = 10_000  # a pass fraction is kept as passed/PASS_SCALE FAIL_TO_PASS tests (4 decimals)
AGENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")  # "@" separates name and version
FIELD_ALIASES: dict[str, tuple[str, ...]] = {  # the canonical name first (--columns renames to it)
    "instance_id": ("instance_id", "task_id", "task", "id"),
    "agent": ("agent", "model", "model_name_or_path", "system", "submission"),
    "resolved": ("resolved", "success", "solved", "passed"),
    "pass_fraction": ("pass_fraction", "pass_rate", "score"),
    "cost_usd": ("cost_usd", "cost", "money_usd", "price_usd", "instance_cost"),
    "tokens_in": ("tokens_in", "input_tokens", "prompt_tokens"),
    "tokens_out": ("tokens_out", "output_tokens", "completion_tokens"),
    "tokens": ("tokens", "total_tokens"),
    "steps": ("steps", "api_calls", "n_steps", "turns"),
    "patch": ("patch", "model_patch"),
    "repo": ("repo", "repository"),
    "seed": ("seed", "run", "attempt"),
}
_TRUE = {"true", "1", "yes", "y", "t", "resolved"}
_FALSE = {"false", "0", "no", "n", "f", "unresolved", ""}
_SWEBENCH_ID_RE = re.compile(r"^(?P<owner>[A-Za-z0-9_.\-]+?)__(?P<name>[A-Za-z0-9_.\-]+)-\d+$")
# SWE-Bench Pro: instance_<owner>__<name>-<commit sha>[-v<sha> or -vnan]
_SWEBENCH_PRO_ID_RE = re.compile(
    r"^instance_(?P<owner>[A-Za-z0-9_.\-]+?)__(?P<name>[A-Za-z0-9_.\-]+?)-[0-9a-f]{7,40}(?:-v[0-9a-z]+)?$"
)
TASK_TEXTS = ("none", "repo")
_SWESMITH_ID_RE = re.compile(r"^(?P<repo>[A-Za-z0-9_.\-]+__[A-Za-z0-9_.\-]+\.[0-9a-f]{8})\.[^.]+$")


class TableError(ValueError):
    """A table that cannot be imported; the message names the file, the place, and what is wrong."""


@dataclass
class Record:
    """One task x agent row, normalised."""

    where: str  # "FILE:LINE" or "FILE: agent A, task T"
    instance_id: str
    agent: str  # the raw name, before --agent-map
    resolved: bool
    pass_fraction: float | None = None
    cost_usd: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    steps: int | None = None
    patch: str | None = None
    repo: str | None = None
    seed: int = 0


@dataclass
class ImportReport:
    table: str
    store: str
    tasks_out: str
    cost_unit: str
    records: int = 0
    per_agent: dict[str, int] = field(default_factory=dict)  # store identity -> runs
    resolved: dict[str, int] = field(default_factory=dict)
    skipped_agents: dict[str, int] = field(default_factory=dict)  # raw names left out by --agent-map
    unmatched_map: list[str] = field(default_factory=list)  # --agent-map entries the table lacks
    tasks: int = 0
    tasks_from_file: int = 0
    cost_basis: str | None = None  # how costs were made when the table had none (--price-per-step)

    def lines(self) -> list[str]:
        out = [
            f"imported {self.records} runs of {len(self.per_agent)} agents on {self.tasks} tasks into "
            f"{self.store} (cost unit: {self.cost_unit})",
            f"tasks: {self.tasks_out} ({self.tasks_from_file} from the task file, "
            f"{self.tasks - self.tasks_from_file} known only by id: replay only)",
        ]
        if self.cost_basis:
            out.append(f"cost basis: {self.cost_basis}")
        for agent, runs in sorted(self.per_agent.items()):
            out.append(f"  {agent}: {runs} runs, {self.resolved.get(agent, 0)} resolved")
        if self.skipped_agents:
            left = ", ".join(f"{a} ({n})" for a, n in sorted(self.skipped_agents.items()))
            out.append(f"not in --agent-map, left out: {left}")
        if self.unmatched_map:
            out.append(f"in --agent-map, not in the table: {', '.join(self.unmatched_map)}")
        out.append(f"replay it: {self.replay_command()}")
        return out

    def replay_command(self) -> str:
        """The env check that replays this import: its task file, its store and its agents by identity
        (the env's default agents are the built-in repair agents, which an imported store does not hold)."""
        import shlex

        agents = ",".join(sorted(self.per_agent))
        words = [f"tasks={self.tasks_out}", f"store={self.store}", "mode=replay", f"agents=[{agents}]"]
        return "hrm-spawn env check HRMSpawn/SWESmith-v0 " + " ".join(shlex.quote(w) for w in words)


# ---------------------------------------------------------------- reading tables


def read_table(
    path: str | Path, fmt: str, report: str | Path | None = None, columns: dict[str, str] | None = None
) -> list[Record]:
    """Every record of the table, normalised; TableError at the first bad one (nothing is half-imported).
    ``columns``: field -> the table's column for it (csv, jsonl), over the aliases."""
    path = Path(path)
    if fmt not in FORMATS:
        raise TableError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    columns = columns or {}
    if columns and fmt not in ("csv", "jsonl"):
        raise TableError(f"--columns applies to csv and jsonl tables, not {fmt}")
    if fmt == "mini-swe-agent":
        return _checked([_record(where, raw) for where, raw in _mini_rows(path, report)], path)
    if not path.is_file():
        raise TableError(f"{path}: file not found")
    text = _text(path)
    if fmt == "jsonl":
        rows = _renamed(_jsonl_rows(path, text), columns)
    elif fmt == "csv":
        rows = _renamed(_csv_rows(path, text, columns), columns)
    else:
        rows = _leaderboard_rows(path, text)
    return _checked([_record(where, raw) for where, raw in rows], path)


def _text(path: Path) -> str:
    """The file's text; a byte-order mark (spreadsheets write one) is dropped, other bytes must be UTF-8."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise TableError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _checked(records: list[Record], path: Path) -> list[Record]:
    """``records`` when there is at least one and no (task, agent, seed) twice."""
    if not records:
        raise TableError(f"{path}: no records")
    seen: dict[tuple[str, str, int], str] = {}
    for rec in records:
        key = (rec.instance_id, rec.agent, rec.seed)
        if key in seen:
            raise TableError(
                f"{rec.where}: a second record for task {rec.instance_id}, agent {rec.agent}, seed {rec.seed} "
                f"(first at {seen[key]}); give each run its own 'seed'"
            )
        seen[key] = rec.where
    return records


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TableError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise TableError(f"{path}:{number}: not a JSON object but {type(row).__name__}")
        yield f"{path}:{number}", row


def parse_columns(spec: str | None) -> dict[str, str]:
    """``field=column,...`` -> field -> column. A field is a name of ``FIELD_ALIASES`` or one of its
    aliases (``task=metadata.instance_id`` names the instance_id column)."""
    out: dict[str, str] = {}
    for item in (p for p in (spec or "").split(",") if p.strip()):
        name, sep, column = item.partition("=")
        name, column = name.strip(), column.strip()
        if not sep or not name or not column:
            raise TableError(f"--columns: {item!r} is not field=column")
        canonical = next((f for f, aliases in FIELD_ALIASES.items() if name in aliases), None)
        if canonical is None:
            raise TableError(f"--columns: {name!r} is not a field; fields: {', '.join(FIELD_ALIASES)}")
        if canonical in out:
            raise TableError(f"--columns: two columns for {canonical} ({out[canonical]!r}, {column!r})")
        out[canonical] = column
    return out


def _renamed(
    rows: Iterator[tuple[str, dict[str, Any]]], columns: dict[str, str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows with each mapped column under its field's canonical name (which ``_pick`` tries first)."""
    for where, row in rows:
        for name, column in columns.items():
            if column in row:
                row[name] = row.pop(column)
        yield where, row


def _csv_rows(
    path: Path, text: str, columns: dict[str, str] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames:
        raise TableError(f"{path}: no header row")
    columns = columns or {}
    for name, column in columns.items():
        if column not in reader.fieldnames:
            raise TableError(
                f"{path}:1: --columns {name}={column}: the header has no column {column!r}; "
                f"it has {', '.join(repr(f[:40]) for f in reader.fieldnames[:8])}"
            )
    for needed in ("instance_id", "agent", "resolved"):
        if needed not in columns and not set(FIELD_ALIASES[needed]) & set(reader.fieldnames):
            raise TableError(
                f"{path}:1: the header has no {needed} column (or {', '.join(FIELD_ALIASES[needed][1:])}); "
                f"it has {', '.join(repr(f[:40]) for f in reader.fieldnames[:8])}"
            )
    for number, row in enumerate(reader, start=2):  # line 1 is the header
        if None in row:
            raise TableError(f"{path}:{number}: more cells than the header has columns")
        yield f"{path}:{number}", {k: v for k, v in row.items() if v is not None and v != ""}


def _leaderboard_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TableError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise TableError(f"{path}: a leaderboard is a JSON object agent -> task id -> fields")
    for agent, tasks in data.items():
        if not isinstance(tasks, dict):
            raise TableError(f"{path}: agent {agent!r}: expected an object task id -> fields")
        for task_id, fields in tasks.items():
            where = f"{path}: agent {agent}, task {task_id}"
            if isinstance(fields, bool):
                fields = {"resolved": fields}
            if not isinstance(fields, dict):
                raise TableError(f"{where}: expected an object of fields or true/false")
            yield where, {**fields, "instance_id": task_id, "agent": agent}


def _mini_rows(run_dir: Path, report: str | Path | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """A mini-swe-agent batch run: the patch per task from ``preds.json``, cost and steps from each
    trajectory's ``info.model_stats``, resolved from swebench's report (``resolved_ids``). Tasks the
    evaluation did not complete (``error_ids``, or never submitted) are left out: a harness failure is
    not the agent's outcome."""
    preds_path = run_dir / "preds.json"
    if not preds_path.is_file():
        raise TableError(f"{run_dir}: no preds.json (a mini-swe-agent batch run's output folder)")
    if report is None:
        raise TableError(f"{run_dir}: --report must name swebench's evaluation report (with resolved_ids)")
    if not Path(report).is_file():
        raise TableError(f"--report {report}: file not found (swebench's evaluation report)")
    evaluated = _json(Path(report))
    resolved = set(evaluated.get("resolved_ids") or [])
    done = set(evaluated.get("completed_ids") or []) - set(evaluated.get("error_ids") or [])
    for instance_id, pred in sorted(_json(preds_path).items()):
        where = f"{run_dir}: task {instance_id}"
        if instance_id not in done:
            continue
        if not isinstance(pred, dict):
            raise TableError(
                f"{preds_path}: task {instance_id}: expected an object with model_patch, not {pred!r:.60}"
            )
        traj_path = run_dir / instance_id / f"{instance_id}.traj.json"
        if not traj_path.is_file():
            raise TableError(f"{where}: no trajectory {traj_path} (its cost and steps)")
        stats = (_json(traj_path).get("info") or {}).get("model_stats") or {}
        yield (
            where,
            {
                "instance_id": instance_id,
                "agent": pred.get("model_name_or_path"),
                "resolved": instance_id in resolved,
                "patch": pred.get("model_patch"),
                "cost_usd": stats.get("instance_cost"),
                "steps": stats.get("api_calls"),
            },
        )


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise TableError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise TableError(f"{path}: expected a JSON object")
    return data


def _pick(raw: dict[str, Any], name: str) -> Any:
    for alias in FIELD_ALIASES[name]:
        if alias in raw and raw[alias] is not None:
            return raw[alias]
    return None


def _record(where: str, raw: dict[str, Any]) -> Record:
    def bad(name: str, why: str) -> TableError:
        return TableError(f"{where}: field {name}: {why}")

    instance_id = _pick(raw, "instance_id")
    if not isinstance(instance_id, str) or not ID_RE.match(instance_id) or ".." in instance_id:
        raise bad("instance_id", f"{instance_id!r} is missing or not a plain identifier")
    agent = _pick(raw, "agent")
    if not isinstance(agent, str) or not agent.strip():
        raise bad("agent", f"{agent!r} is missing")
    resolved = _bool(_pick(raw, "resolved"), lambda why: bad("resolved", why))
    rec = Record(where, instance_id, agent.strip(), resolved)
    rec.pass_fraction = _number(raw, "pass_fraction", bad, low=0.0, high=1.0)
    if rec.pass_fraction is not None and resolved != (rec.pass_fraction >= 1.0):
        raise bad("pass_fraction", f"{rec.pass_fraction} contradicts resolved={resolved}")
    rec.cost_usd = _number(raw, "cost_usd", bad)
    tokens_in, tokens_out, tokens = (_count(raw, k, bad) for k in ("tokens_in", "tokens_out", "tokens"))
    if tokens is not None and tokens_in is None and tokens_out is None:
        tokens_in = tokens  # only a total: counted as input
    rec.tokens_in = None if tokens_in is None else int(tokens_in)
    rec.tokens_out = None if tokens_out is None else int(tokens_out)
    steps = _count(raw, "steps", bad)
    rec.steps = None if steps is None else int(steps)
    seed = _count(raw, "seed", bad)
    rec.seed = 0 if seed is None else int(seed)
    patch, repo = _pick(raw, "patch"), _pick(raw, "repo")
    if patch is not None and not isinstance(patch, str):
        raise bad("patch", f"not text but {type(patch).__name__}")
    rec.patch = patch or None
    if repo is not None and not isinstance(repo, str):
        raise bad("repo", f"not text but {type(repo).__name__}")
    rec.repo = repo or None
    return rec


def _bool(value: Any, bad: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise bad("missing" if value is None else f"{value!r} is not true/false")


def _number(
    raw: dict[str, Any], name: str, bad: Any, low: float = 0.0, high: float = math.inf
) -> float | None:
    value = _pick(raw, name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise bad(name, f"{value!r} is not a number") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise bad(name, f"{number} is outside [{low}, {high}]")
    return number


def _count(raw: dict[str, Any], name: str, bad: Any) -> float | None:
    """A whole number (tokens, steps, a seed): ``1.5`` is refused, not cut to 1 (two seeds would merge)."""
    number = _number(raw, name, bad)
    if number is not None and not number.is_integer():
        raise bad(name, f"{number} is not a whole number")
    return number


# ---------------------------------------------------------------- agents, cost unit, outcomes


def parse_agent_map(spec: str | None) -> dict[str, tuple[str, str]] | None:
    """``raw=name[@version],...`` or a JSON/YAML file with that mapping -> raw -> (name, version)."""
    if not spec:
        return None
    path = Path(spec)
    if not path.is_file() and "=" not in spec and path.suffix.lower() in (".yaml", ".yml", ".json"):
        raise TableError(f"--agent-map {spec}: file not found")
    mapping = "an agent map is a mapping raw name -> name[@version]"
    pairs = _pairs(spec, "--agent-map", "raw=name[@version]", mapping)
    return {raw: _identity(str(target), f"--agent-map {raw}") for raw, target in pairs}


def _identity(target: str, what: str) -> tuple[str, str]:
    name, _, version = target.partition("@")
    version = version or DEFAULT_VERSION
    for part in (name, version):
        if not AGENT_RE.match(part):
            raise TableError(
                f"{what}: {part!r} is not a plain agent name or version (letters, digits, _ . -)"
            )
    return name, version


def parse_prices(spec: str | None) -> dict[str, float] | None:
    """``raw=USD,...`` (raw agent names as in the table) or a JSON/YAML file with that mapping."""
    if not spec:
        return None
    mapping = "a price table is a mapping raw agent name -> USD per step"
    # Split at the last "=": a price never holds one, a raw agent name may.
    pairs = _pairs(spec, "--price-per-step", "raw=USD", mapping, at_last=True)
    out: dict[str, float] = {}
    for raw, price in pairs:
        try:
            value = float(price)
        except (TypeError, ValueError):
            raise TableError(f"--price-per-step {raw}: {price!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise TableError(f"--price-per-step {raw}: {value} is not a positive price")
        out[raw] = value
    return out


def _pairs(
    spec: str, option: str, form: str, mapping: str, *, at_last: bool = False
) -> list[tuple[str, Any]]:
    """The ``raw=value`` pairs of ``option``: from a JSON/YAML mapping file, else ``raw=value,...``."""
    path = Path(spec)
    if path.is_file():
        import yaml

        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict):
            raise TableError(f"{path}: {mapping}")
        return [(str(k), v) for k, v in data.items()]
    pairs = []
    for item in (p for p in spec.split(",") if p.strip()):
        raw, sep, value = item.rpartition("=") if at_last else item.partition("=")
        if not sep or not raw.strip() or not value.strip():
            raise TableError(f"{option}: {item!r} is not {form}")
        pairs.append((raw.strip(), value.strip()))
    return pairs


def priced_by_steps(records: list[Record], prices: dict[str, float]) -> str:
    """Give every record of a priced agent ``cost_usd = steps x price`` (in place); the cost basis in words.
    Refused: a priced agent's record without steps, or one that already has a dollar cost (two costs)."""
    for rec in records:
        if rec.agent not in prices:
            continue
        if rec.steps is None:
            raise TableError(f"{rec.where}: field steps: missing, and --price-per-step prices by steps")
        if rec.cost_usd is not None:
            raise TableError(
                f"{rec.where}: field cost_usd: the table has a cost; --price-per-step would replace it"
            )
        rec.cost_usd = rec.steps * prices[rec.agent]
    listed = ", ".join(f"{a}={p:g}" for a, p in sorted(prices.items()))
    return f"steps x USD per step ({listed})"


def table_cost_unit(records: list[Record]) -> str:
    """``usd`` when every record has a dollar cost, else ``tokens`` when every record has token counts."""
    if all(r.cost_usd is not None for r in records):
        return "usd"
    if all(r.tokens_in is not None or r.tokens_out is not None for r in records):
        return "tokens"
    with_usd = sum(r.cost_usd is not None for r in records)
    raise TableError(
        f"the table gives a cost for {with_usd} of {len(records)} records in USD and not every record has "
        "token counts either: every run needs a cost in one unit (a run without one would look free)"
    )


def outcome_of(rec: Record, name: str, version: str, source: str) -> Outcome:
    """The replay outcome of one record. The pass fraction becomes FAIL_TO_PASS passed/PASS_SCALE, so the
    evaluation's pass_rate and resolved are the table's; without a patch a marker names the run (a
    candidate per agent and task, never applied: imported runs are replay only)."""
    passed = rec.pass_fraction if rec.pass_fraction is not None else float(rec.resolved)
    evaluation = Evaluation(
        f2p_passed=round(passed * PASS_SCALE), f2p_total=PASS_SCALE, p2p_passed=1, p2p_total=1
    )
    if evaluation.resolved != rec.resolved:  # a fraction that rounds to 1.0 without being resolved
        evaluation.f2p_passed = min(evaluation.f2p_passed, PASS_SCALE - 1)
    steps = f"{rec.steps} steps" if rec.steps is not None else "steps unknown"
    return Outcome(
        result=AgentResult(
            patch=rec.patch or f"# imported run without a patch: {name}@{version} on {rec.instance_id}\n",
            status="ok",
            cost=Cost(
                tokens_in=rec.tokens_in or 0, tokens_out=rec.tokens_out or 0, money_usd=rec.cost_usd or 0.0
            ),
            visible=None,
            visible_pass_rate=0.0,
            trajectory=[f"imported from {source} ({rec.where}): {steps}"],
            agent=name,
            version=version,
            seed=rec.seed,
        ),
        evaluation=evaluation,
    )


# ---------------------------------------------------------------- tasks for replay


def repo_from_id(instance_id: str) -> str:
    """The repository an id names, when it follows SWE-smith (``owner__name.sha8.kind__hash`` ->
    ``swesmith/owner__name.sha8``), SWE-bench (``owner__name-123`` -> ``owner/name``) or SWE-Bench Pro
    (``instance_owner__name-<sha>[-v<sha>|-vnan]`` -> ``owner/name``); else ``unknown``."""
    match = _SWESMITH_ID_RE.match(instance_id)
    if match:
        return f"swesmith/{match.group('repo')}"
    match = _SWEBENCH_PRO_ID_RE.match(instance_id)
    if match:
        return f"{match.group('owner')}/{match.group('name')}"
    match = _SWEBENCH_ID_RE.match(instance_id)
    if match:
        return f"{match.group('owner')}/{match.group('name')}"
    return "unknown"


def replay_tasks(
    records: list[Record], task_file: str | Path | None, task_text: str = "none"
) -> tuple[list[TaskInstance], int]:
    """One task per imported id, in first-seen order: the task file's row when it has the id, else a
    ``replay_only`` task (its repository from the record or the id; with ``task_text="repo"`` its problem
    text names that repository). Also how many came from the file."""
    if task_text not in TASK_TEXTS:
        raise TableError(f"--task-text must be one of {', '.join(TASK_TEXTS)}, not {task_text!r}")
    known: dict[str, TaskInstance] = {}
    if task_file:
        if not Path(task_file).exists():
            raise TableError(f"--tasks {task_file}: file not found")
        loaded = load_tasks(task_file)
        if loaded.problems:
            raise TableError(
                f"{task_file}: {len(loaded.problems)} invalid task records, first: {loaded.problems[0]}"
            )
        known = {t.instance_id: t for t in loaded.tasks}
    tasks: dict[str, TaskInstance] = {}
    for rec in records:
        if rec.instance_id in tasks:
            continue
        if rec.instance_id in known:
            tasks[rec.instance_id] = known[rec.instance_id]
            continue
        repo = rec.repo or repo_from_id(rec.instance_id)
        text = f"Repository {repo}." if task_text == "repo" else None
        try:
            tasks[rec.instance_id] = TaskInstance(
                instance_id=rec.instance_id, repo=repo, replay_only=True, problem_statement=text
            )
        except ValueError as exc:
            raise TableError(
                f"{rec.where}: field repo: {rec.repo!r} is not a repository name: {exc}"
            ) from None
    return list(tasks.values()), sum(1 for t in tasks if t in known)


# ---------------------------------------------------------------- the import


def import_table(
    table: str | Path,
    fmt: str,
    store_path: str | Path,
    agent_map: str | dict[str, tuple[str, str]] | None = None,
    task_file: str | Path | None = None,
    tasks_out: str | Path | None = None,
    eval_report: str | Path | None = None,
    columns: str | dict[str, str] | None = None,
    price_per_step: str | dict[str, float] | None = None,
    task_text: str = "none",
) -> ImportReport:
    """Read, check, then write: the store gets every record or none (a bad table changes nothing).
    ``eval_report``: swebench's evaluation report, for the ``mini-swe-agent`` format; ``columns``,
    ``price_per_step``, ``task_text``: as ``--columns``, ``--price-per-step``, ``--task-text``."""
    columns = parse_columns(columns) if isinstance(columns, str) or columns is None else columns
    records = read_table(table, fmt, eval_report, columns)
    prices = parse_prices(price_per_step) if isinstance(price_per_step, str) else price_per_step
    basis = priced_by_steps(records, prices) if prices else None
    mapping = parse_agent_map(agent_map) if isinstance(agent_map, str) or agent_map is None else agent_map
    skipped: Counter[str] = Counter()
    chosen: list[tuple[Record, str, str]] = []
    for rec in records:
        if mapping is None:
            name, version = _identity(rec.agent, f"{rec.where}: field agent (rename it with --agent-map)")
        elif rec.agent in mapping:
            name, version = mapping[rec.agent]
        else:
            skipped[rec.agent] += 1
            continue
        chosen.append((rec, name, version))
    unmatched = _check_map_matches(mapping, records, table) if mapping is not None else []
    if not chosen:
        raise TableError(f"{table}: no record of an agent named in --agent-map (the map is empty)")
    _check_distinct_runs(chosen)
    unit = table_cost_unit([rec for rec, _, _ in chosen])
    tasks, from_file = replay_tasks([rec for rec, _, _ in chosen], task_file, task_text)
    tasks_out = Path(tasks_out) if tasks_out else Path(f"{store_path}.tasks.jsonl")
    report = ImportReport(str(table), str(store_path), str(tasks_out), unit, tasks=len(tasks))
    report.tasks_from_file, report.skipped_agents = from_file, dict(skipped)
    report.unmatched_map, report.cost_basis = unmatched, basis
    merged = _merge_tasks(tasks_out, tasks)  # before the store: an unreadable task file changes nothing
    with OutcomeStore(store_path) as store:
        _claim_unit(store, unit)
        if basis:
            store.set_meta("cost_basis", basis)
        for rec, name, version in chosen:
            key = OutcomeKey(rec.instance_id, name, version, rec.seed)
            store.put(key, outcome_of(rec, name, version, Path(table).name))
            ident = f"{name}@{version}"
            report.per_agent[ident] = report.per_agent.get(ident, 0) + 1
            report.resolved[ident] = report.resolved.get(ident, 0) + int(rec.resolved)
            report.records += 1
    save_tasks(merged, tasks_out)
    return report


def _check_map_matches(
    mapping: dict[str, tuple[str, str]], records: list[Record], table: str | Path
) -> list[str]:
    """The --agent-map entries that name no agent of the table. One that looks like a misspelt agent of
    the table the map leaves out is an error (that agent would be left out with nothing but a line in the
    summary); others are returned (a map file kept for several tables names agents this one lacks)."""
    from hrm_spawn.envs.suggest import close_matches, did_you_mean

    agents = sorted({rec.agent for rec in records})
    unmapped = [a for a in agents if a not in mapping]
    unmatched = [raw for raw in mapping if raw not in agents]
    for raw in unmatched:
        if close_matches(raw, unmapped):
            raise TableError(
                f"--agent-map: {table} has no agent {raw!r}{did_you_mean(raw, unmapped)}; "
                f"its agents: {', '.join(agents)}"
            )
    return unmatched


def _check_distinct_runs(chosen: list[tuple[Record, str, str]]) -> None:
    """No two records land on one store key: two raw agents mapped to one name@version would
    silently overwrite each other's runs."""
    seen: dict[tuple[str, str, str, int], Record] = {}
    for rec, name, version in chosen:
        key = (rec.instance_id, name, version, rec.seed)
        if key in seen:
            first = seen[key]
            raise TableError(
                f"{rec.where}: agents {first.agent!r} and {rec.agent!r} both become {name}@{version} "
                f"on task {rec.instance_id} (seed {rec.seed}; first at {first.where}): "
                "give them different names or versions in --agent-map"
            )
        seen[key] = rec


def _claim_unit(store: OutcomeStore, unit: str) -> None:
    """Record ``unit`` as the store's cost unit, refusing to mix units (λ would weigh them alike)."""
    stated = store.get_meta("cost_unit")
    if stated is None and len(store):
        stated = DEFAULT_COST_UNIT  # runs collected here: cost in test runs
    if stated is not None and stated != unit:
        raise TableError(
            f"{store.path}: its outcomes cost {stated}, the table's cost {unit}; λ would weigh the two alike "
            "(import into a store of its own)"
        )
    store.set_meta("cost_unit", unit)


def _merge_tasks(path: Path, tasks: list[TaskInstance]) -> list[TaskInstance]:
    """Tasks already in ``path`` (an earlier import) first, then the new ids. A task row from this
    import's ``--tasks`` replaces an earlier id-only placeholder (re-importing with the task file adds the
    problem text); an id-only placeholder never replaces a full row."""
    if not path.is_file():
        return tasks
    new = {t.instance_id: t for t in tasks}
    loaded = load_tasks(path)
    if loaded.problems:  # rewriting the file would drop those records
        raise TableError(
            f"{path}: the task file of an earlier import has {len(loaded.problems)} invalid records "
            f"(first: {loaded.problems[0]}); fix it, or name another with --tasks-out"
        )
    before = loaded.tasks
    merged = [
        new[t.instance_id] if t.replay_only and not new.get(t.instance_id, t).replay_only else t
        for t in before
    ]
    have = {t.instance_id for t in before}
    return merged + [t for t in tasks if t.instance_id not in have]


def store_agents(store_path: str | Path) -> tuple[str, list[tuple[str, str, int, int]]]:
    """(cost unit, [(agent, version, runs, tasks)]) of a store, sorted by agent and version."""
    with OutcomeStore(store_path, readonly=True) as store:
        runs: Counter[tuple[str, str]] = Counter()
        tasks: dict[tuple[str, str], set[str]] = {}
        for key in store.keys():  # noqa: SIM118 (a store, not a dict)
            ident = (key.agent, key.agent_version)
            runs[ident] += 1
            tasks.setdefault(ident, set()).add(key.instance_id)
        return store.cost_unit, [(a, v, runs[(a, v)], len(tasks[(a, v)])) for a, v in sorted(runs)]


# ---------------------------------------------------------------- CLI


def cli_import(args: argparse.Namespace) -> int:
    """``hrm-spawn store import FILE --format F --store PATH [--agent-map M] [--tasks T] [--tasks-out O]``."""
    from hrm_spawn.envs.store import StoreError

    try:
        report = import_table(
            args.file,
            args.format,
            args.store,
            args.agent_map,
            args.tasks,
            args.tasks_out,
            args.report,
            getattr(args, "columns", None),
            getattr(args, "price_per_step", None),
            getattr(args, "task_text", "none"),
        )
    except (TableError, StoreError, OSError, UnicodeDecodeError) as exc:
        print(f"hrm-spawn store import: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


def cli_agents(args: argparse.Namespace) -> int:
    """``hrm-spawn store agents STORE``: the agent identities in a store with their run counts."""
    from hrm_spawn.envs.store import StoreError

    try:
        unit, rows = store_agents(args.store)
    except StoreError as exc:
        print(f"hrm-spawn store agents: {exc}", file=sys.stderr)
        return 2
    print(f"{args.store}: cost unit {unit}")
    width = max([len(a) for a, *_ in rows] + [5])
    vwidth = max([len(v) for _, v, *_ in rows] + [7])
    print(f"{'agent':{width}}  {'version':{vwidth}}  {'runs':>6}  {'tasks':>6}")
    for agent, version, runs, tasks in rows:
        print(f"{agent:{width}}  {version:{vwidth}}  {runs:>6}  {tasks:>6}")
    return 0
