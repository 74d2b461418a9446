"""Outcome tables from other harnesses become replay outcomes, with the store's cost unit stated.

The synthetic table (tests/fixtures/tables/: the same 18 runs as JSONL, CSV and a leaderboard's nested
JSON) has three agents on six tasks from four repositories, dollar costs, token counts and steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hrm_spawn.envs.collect import resolve_agents
from hrm_spawn.envs.replay import build_task_table
from hrm_spawn.envs.results import AgentResult, Cost, Evaluation
from hrm_spawn.envs.split import split_tasks
from hrm_spawn.envs.store import Outcome, OutcomeKey, OutcomeStore
from hrm_spawn.envs.store_import import (
    TableError,
    import_table,
    parse_agent_map,
    parse_columns,
    parse_prices,
    read_table,
    repo_from_id,
    store_agents,
)
from hrm_spawn.envs.tasks import load_tasks, save_tasks
from hrm_spawn.trainers.cli import main

TABLES = Path(__file__).resolve().parents[1] / "fixtures" / "tables"
FILES = {
    "jsonl": TABLES / "runs.jsonl",
    "csv": TABLES / "runs.csv",
    "leaderboard": TABLES / "leaderboard.json",
}
MAP = "20250101_cheap=cheap,20250101_mid=mid,20250101_strong=strong@v2"


def _contents(store_path: Path) -> dict[tuple, tuple]:
    with OutcomeStore(store_path, readonly=True) as store:
        out = {}
        for task in store.tasks():
            for key, outcome in store.iter_task(task):
                ev, cost = outcome.evaluation, outcome.result.cost
                out[(key.instance_id, key.agent, key.agent_version, key.seed)] = (
                    ev.resolved,
                    round(ev.pass_rate, 4),
                    cost.money_usd,
                    cost.tokens_in,
                    cost.tokens_out,
                    outcome.result.visible_pass_rate,
                )
        return out


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_every_format_gives_the_same_outcomes(tmp_path: Path, fmt: str) -> None:
    reference = tmp_path / "ref.sqlite"
    import_table(FILES["jsonl"], "jsonl", reference, MAP)
    store = tmp_path / f"{fmt}.sqlite"
    report = import_table(FILES[fmt], fmt, store, MAP)
    assert report.records == 18 and report.tasks == 6 and report.cost_unit == "usd"
    assert _contents(store) == _contents(reference)
    assert len(_contents(store)) == 18


def test_outcomes_keep_the_tables_figures(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    import_table(FILES["jsonl"], "jsonl", store, MAP)
    rows = {
        (r["instance_id"], r["agent"]): r for r in map(json.loads, FILES["jsonl"].read_text().splitlines())
    }
    names = {raw: ident for raw, ident in parse_agent_map(MAP).items()}
    got = _contents(store)
    for (task, raw), row in rows.items():
        name, version = names[raw]
        resolved, pass_rate, usd, tokens_in, tokens_out, visible = got[(task, name, version, 0)]
        assert resolved is row["resolved"]
        assert pass_rate == row.get("pass_fraction", float(row["resolved"]))
        assert (usd, tokens_in, tokens_out) == (row["cost_usd"], row["tokens_in"], row["tokens_out"])
        assert visible == 0.0  # nothing of the verdict is observable from the run itself
    with OutcomeStore(store, readonly=True) as s:
        outcome = s.get(OutcomeKey("django__django-11099", "cheap", "imported", 0))
        assert outcome.result.patch.startswith("diff --git a/django/x.py")  # the table's own patch
        assert outcome.result.trajectory == [
            "imported from runs.jsonl (" + str(FILES["jsonl"]) + ":1): 12 steps"
        ]
        assert s.cost_unit == "usd"


def test_cli_import_and_agents(tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_task) -> None:
    known = fixture_task.model_copy(update={"instance_id": "sympy__sympy-20590"})
    task_file = save_tasks([known], tmp_path / "known.jsonl")
    store = tmp_path / "s.sqlite"
    argv = ["store", "import", str(FILES["csv"]), "--format", "csv", "--store", str(store)]
    code = main(
        [*argv, "--agent-map", "20250101_cheap=cheap,20250101_strong=strong", "--tasks", str(task_file)]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == f"imported 12 runs of 2 agents on 6 tasks into {store} (cost unit: usd)"
    assert out[1] == f"tasks: {store}.tasks.jsonl (1 from the task file, 5 known only by id: replay only)"
    assert out[-2] == "not in --agent-map, left out: 20250101_mid (6)"
    assert out[-1] == (
        f"replay it: hrm-spawn env check HRMSpawn/SWESmith-v0 tasks={store}.tasks.jsonl store={store} "
        "mode=replay 'agents=[cheap@imported,strong@imported]'"
    )

    tasks = {t.instance_id: t for t in load_tasks(f"{store}.tasks.jsonl").tasks}
    assert tasks["sympy__sympy-20590"].patch == known.patch and not tasks["sympy__sympy-20590"].replay_only
    assert tasks["django__django-11099"].replay_only and tasks["django__django-11099"].repo == "django/django"
    tinydb = tasks["tinydb__tinydb.10f5f5d9.func_pm_ctrl_invert_if__hvauvyvv"]
    assert tinydb.repo == "swesmith/tinydb__tinydb.10f5f5d9"
    assert tinydb.modifier_kinds == ["func_pm_ctrl_invert_if"]

    assert main(["store", "agents", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{store}: cost unit usd"
    assert [line.split() for line in lines[2:]] == [
        ["cheap", "imported", "6", "6"],
        ["strong", "imported", "6", "6"],
    ]
    assert store_agents(store)[0] == "usd"


def test_imported_outcomes_replay_and_split(tmp_path: Path) -> None:
    store_path = tmp_path / "s.sqlite"
    import_table(FILES["leaderboard"], "leaderboard", store_path, MAP)
    tasks = load_tasks(f"{store_path}.tasks.jsonl").tasks
    slots = resolve_agents(["cheap@imported", "mid@imported", "strong@v2"], build=False)  # no agent code
    with OutcomeStore(store_path, readonly=True) as store:
        resolved_by = {}
        for task in tasks:
            table = build_task_table(task, store, slots)
            assert len(table.outcomes) == 3 and len(table.candidates()) == 3
            resolved_by[task.instance_id] = sorted(
                k for (k, _, _), job in table.outcomes.items() if job.resolved
            )
    assert resolved_by["django__django-11099"] == [0, 1, 2]
    assert resolved_by["sympy__sympy-20590"] == [2]
    assert resolved_by["tinydb__tinydb.10f5f5d9.func_pm_ctrl_invert_if__hvauvyvv"] == []
    sides = split_tasks(tasks, heldout_fraction=0.5, seed=0)
    for repo in ("django/django", "sympy/sympy"):  # each id its own group, each repository on both sides
        assert (
            sum(t.repo == repo for t in sides["heldout"]) == sum(t.repo == repo for t in sides["train"]) == 1
        )


def test_reimport_is_idempotent(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    import_table(FILES["jsonl"], "jsonl", store, MAP)
    first = _contents(store)
    import_table(FILES["csv"], "csv", store, MAP)
    assert _contents(store) == first
    assert len(load_tasks(f"{store}.tasks.jsonl").tasks) == 6


def test_units_never_mix(tmp_path: Path) -> None:
    live = tmp_path / "live.sqlite"
    with OutcomeStore(live) as store:
        result = AgentResult(patch="", status="ok", cost=Cost(sandbox_s=3.0))
        store.put(OutcomeKey("t", "a", "1", 0), Outcome(result, Evaluation(0, 1, 1, 1)))
    with pytest.raises(TableError, match="its outcomes cost test_runs, the table's cost usd"):
        import_table(FILES["jsonl"], "jsonl", live, MAP)
    assert _contents(live).keys() == {("t", "a", "1", 0)}  # nothing written

    tokens_only = tmp_path / "tokens.jsonl"
    rows = [json.loads(line) for line in FILES["jsonl"].read_text().splitlines()]
    tokens_only.write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "cost_usd"}) + "\n" for r in rows)
    )
    usd = tmp_path / "usd.sqlite"
    import_table(FILES["jsonl"], "jsonl", usd, MAP)
    with pytest.raises(TableError, match="its outcomes cost usd, the table's cost tokens"):
        import_table(tokens_only, "jsonl", usd, MAP)
    assert import_table(tokens_only, "jsonl", tmp_path / "tok.sqlite", MAP).cost_unit == "tokens"


def _bad(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOOD = {"instance_id": "a__b-1", "agent": "x", "resolved": True, "cost_usd": 0.1}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([GOOD, {**GOOD, "resolved": "maybe"}], "bad.jsonl:2: field resolved: 'maybe' is not true/false"),
        ([{k: v for k, v in GOOD.items() if k != "resolved"}], "bad.jsonl:1: field resolved: missing"),
        ([{**GOOD, "instance_id": "../etc"}], "bad.jsonl:1: field instance_id: '../etc' is missing or not"),
        ([{**GOOD, "cost_usd": -1}], "bad.jsonl:1: field cost_usd: -1.0 is outside"),
        ([{**GOOD, "seed": 1.5}], "bad.jsonl:1: field seed: 1.5 is not a whole number"),  # was cut to 1
        ([{**GOOD, "steps": "12.7"}], "bad.jsonl:1: field steps: 12.7 is not a whole number"),
        ([{**GOOD, "pass_fraction": 0.5}], "bad.jsonl:1: field pass_fraction: 0.5 contradicts resolved=True"),
        ([GOOD, GOOD], "bad.jsonl:2: a second record for task a__b-1, agent x, seed 0"),
        ([{**GOOD, "agent": "gpt 4o"}], "bad.jsonl:1: field agent (rename it with --agent-map)"),
        ([GOOD, {k: v for k, v in GOOD.items() if k != "cost_usd"} | {"instance_id": "c__d-2"}], "in USD"),
    ],
)
def test_bad_tables_are_named(tmp_path: Path, rows: list[dict], message: str) -> None:
    with pytest.raises(TableError, match=None) as caught:
        import_table(_bad(tmp_path, rows), "jsonl", tmp_path / "s.sqlite")
    assert message in str(caught.value)
    assert not (tmp_path / "s.sqlite.tasks.jsonl").exists()


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["store", "import", str(tmp_path / "nope.csv"), "--format", "csv", "--store", str(tmp_path / "s")]
    )
    assert code == 2
    assert (
        capsys.readouterr().err.strip() == f"hrm-spawn store import: {tmp_path / 'nope.csv'}: file not found"
    )


def test_agent_map_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("20250101_cheap: cheap@v1\n20250101_mid: mid\n")
    assert parse_agent_map(str(path)) == {
        "20250101_cheap": ("cheap", "v1"),
        "20250101_mid": ("mid", "imported"),
    }
    with pytest.raises(TableError, match="not raw=name"):
        parse_agent_map("cheap")
    with pytest.raises(TableError, match=r"--agent-map .*nope\.yaml: file not found"):
        parse_agent_map(str(tmp_path / "nope.yaml"))  # not "'nope.yaml' is not raw=name"


@pytest.mark.parametrize(
    ("instance_id", "repo"),
    [
        ("django__django-11099", "django/django"),
        ("pandas-dev__pandas.95280573.func_pm_op_swap__abcd1234", "swesmith/pandas-dev__pandas.95280573"),
        ("mytask", "unknown"),
        (  # SWE-Bench Pro: instance_<owner>__<name>-<commit>[-v<commit>|-vnan]
            "instance_future-architect__vuls-01441351c3407abfc21c48a38e28828e1b504e0c",
            "future-architect/vuls",
        ),
        (
            "instance_element-hq__element-web-53a9b6447bd7e6110ee4a63e2ec0322c250f08d1-vnan",
            "element-hq/element-web",
        ),
        ("instance_NodeBB__NodeBB-04998908ba6721d64eba79ae3b65a351dcfbc5b5-vnan", "NodeBB/NodeBB"),
        ("instance_acme__tool-notacommit", "unknown"),
        (
            "instance_qutebrowser__qutebrowser-f91ace96223cac8161c16dd061907e138fe85111-v059c6fdc75567943479b23ebca7c07b5e9a7f34c",
            "qutebrowser/qutebrowser",
        ),
    ],
)
def test_repo_from_id(instance_id: str, repo: str) -> None:
    assert repo_from_id(instance_id) == repo


def test_leaderboard_with_bare_flags(tmp_path: Path) -> None:
    path = tmp_path / "lb.json"
    path.write_text(json.dumps({"sys-a": {"a__b-1": True, "a__b-2": False}}))
    records = read_table(path, "leaderboard")
    assert [(r.instance_id, r.agent, r.resolved) for r in records] == [
        ("a__b-1", "sys-a", True),
        ("a__b-2", "sys-a", False),
    ]
    with pytest.raises(TableError, match="every run needs a cost"):
        import_table(path, "leaderboard", tmp_path / "s.sqlite")


def _mini_run(root: Path) -> tuple[Path, Path]:
    """A mini-swe-agent batch output folder (preds.json written by mini-swe-agent's own writer) and a
    swebench evaluation report: 3 tasks done, one resolved, one whose evaluation errored."""
    from minisweagent.run.benchmarks.swebench import update_preds_file

    run = root / "run"
    run.mkdir()
    for i, iid in enumerate(["a__b-1", "a__b-2", "c__d-3"]):
        update_preds_file(run / "preds.json", iid, "openai/gpt-x", f"diff --git a/f{i}.py b/f{i}.py\n")
        traj = {
            "info": {"model_stats": {"instance_cost": 0.1 * (i + 1), "api_calls": 10 + i}},
            "instance_id": iid,
        }
        (run / iid).mkdir()
        (run / iid / f"{iid}.traj.json").write_text(json.dumps(traj))
    report = root / "openai__gpt-x.run1.json"
    report.write_text(
        json.dumps(
            {
                "completed_ids": ["a__b-1", "a__b-2"],
                "resolved_ids": ["a__b-1"],
                "unresolved_ids": ["a__b-2"],
                "error_ids": ["c__d-3"],
            }
        )
    )
    return run, report


def test_mini_swe_agent_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, report = _mini_run(tmp_path)
    store = tmp_path / "s.sqlite"
    argv = ["store", "import", str(run), "--format", "mini-swe-agent", "--store", str(store)]
    assert main(argv) == 2  # no --report
    assert "--report must name swebench's evaluation report" in capsys.readouterr().err
    assert main([*argv, "--report", str(report)]) == 2  # "openai/gpt-x" is not a plain agent name
    assert "rename it with --agent-map" in capsys.readouterr().err
    assert main([*argv, "--report", str(report), "--agent-map", "openai/gpt-x=gpt-x"]) == 0
    assert "imported 2 runs of 1 agents on 2 tasks" in capsys.readouterr().out
    got = _contents(store)
    assert got == {  # the errored evaluation is not an outcome
        ("a__b-1", "gpt-x", "imported", 0): (True, 1.0, 0.1, 0, 0, 0.0),
        ("a__b-2", "gpt-x", "imported", 0): (False, 0.0, 0.2, 0, 0, 0.0),
    }
    with OutcomeStore(store, readonly=True) as s:
        outcome = s.get(OutcomeKey("a__b-2", "gpt-x", "imported", 0))
        assert outcome.result.patch == "diff --git a/f1.py b/f1.py\n"
        assert outcome.result.trajectory[0].endswith(": 11 steps")


def test_cost_in_the_stores_unit(tmp_path: Path) -> None:
    cost = Cost(sandbox_s=12.0, tokens_in=900, tokens_out=100, money_usd=0.25)
    assert cost.in_unit("test_runs", test_run_s=4.0) == 3.0
    assert cost.in_unit("usd") == 0.25 and cost.in_unit("tokens") == 1000.0
    with pytest.raises(ValueError, match="unknown cost unit"):
        cost.in_unit("minutes")
    store = tmp_path / "s.sqlite"
    import_table(FILES["jsonl"], "jsonl", store, MAP)
    with OutcomeStore(store, readonly=True) as s:
        outcome = s.get(OutcomeKey("psf__requests-2317", "strong", "v2", 0))
        assert outcome.result.cost.in_unit(s.cost_unit) == pytest.approx(0.95 * 1.4)  # the table's dollars


def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    # Excel's "CSV UTF-8" starts with a BOM; it used to glue onto the first column's name
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (TABLES / "runs.csv").read_bytes())
    assert import_table(path, "csv", tmp_path / "s.sqlite").records == 18


def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"instance_id,agent,resolved,cost_usd\na__b-1,caf\xe9,true,1\n")
    with pytest.raises(TableError, match=r"latin\.csv:2: not UTF-8 text"):
        import_table(path, "csv", tmp_path / "s.sqlite")


def test_a_csv_header_without_a_needed_column_says_which(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("task_name,agent,resolved,cost_usd\na__b-1,x,true,1\n")
    with pytest.raises(TableError, match=r"runs\.csv:1: the header has no instance_id column .*'task_name'"):
        import_table(path, "csv", tmp_path / "s.sqlite")


def test_a_misspelt_agent_map_entry_is_an_error_not_a_left_out_agent(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"has no agent '20250101_chep' \(did you mean '20250101_cheap'"):
        import_table(FILES["csv"], "csv", tmp_path / "s.sqlite", "20250101_chep=cheap,20250101_mid=mid")
    assert not (tmp_path / "s.sqlite").exists()


def test_two_agents_mapped_to_one_identity_are_refused(tmp_path: Path) -> None:
    # both would be stored under same@imported and the second overwrite the first's runs
    with pytest.raises(
        TableError, match="agents '20250101_cheap' and '20250101_strong' both become same@imported"
    ):
        import_table(FILES["csv"], "csv", tmp_path / "s.sqlite", "20250101_cheap=same,20250101_strong=same")
    # distinct versions of one name are distinct runs
    report = import_table(
        FILES["csv"], "csv", tmp_path / "v.sqlite", "20250101_cheap=x@a,20250101_strong=x@b"
    )
    assert report.per_agent == {"x@a": 6, "x@b": 6}


def test_a_missing_task_file_is_named_as_the_tasks_option(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "store",
            "import",
            str(FILES["csv"]),
            "--format",
            "csv",
            "--store",
            str(tmp_path / "s.sqlite"),
            "--tasks",
            str(tmp_path / "nope.jsonl"),
        ]
    )
    assert code == 2
    assert (
        capsys.readouterr().err.strip()
        == f"hrm-spawn store import: --tasks {tmp_path / 'nope.jsonl'}: file not found"
    )


def test_mini_swe_agent_bad_report_and_preds_are_named(tmp_path: Path) -> None:
    run, report = _mini_run(tmp_path)
    with pytest.raises(TableError, match=r"--report .*nope\.json: file not found"):
        import_table(run, "mini-swe-agent", tmp_path / "s.sqlite", eval_report=tmp_path / "nope.json")
    preds = json.loads((run / "preds.json").read_text())
    first = sorted(preds)[0]
    (run / "preds.json").write_text(json.dumps({**preds, first: "oops"}))
    with pytest.raises(TableError, match=rf"preds\.json: task {first}: expected an object with model_patch"):
        import_table(run, "mini-swe-agent", tmp_path / "s.sqlite", "openai/gpt-x=gpt-x", eval_report=report)


def test_a_store_path_that_is_not_a_store_is_a_store_import_error(tmp_path: Path, capsys) -> None:
    store = tmp_path / "notes.sqlite"
    store.write_text("not a database\n")
    assert main(["store", "import", str(FILES["csv"]), "--format", "csv", "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hrm-spawn store import: {store}: not a usable outcome store"), err
    assert store.read_text() == "not a database\n"


def test_reimporting_with_a_task_file_replaces_the_id_only_tasks(tmp_path: Path) -> None:
    """The second import said '1 from the task file' but the task file kept the id-only placeholder."""
    store = tmp_path / "s.sqlite"
    import_table(FILES["csv"], "csv", store)
    out = Path(f"{store}.tasks.jsonl")
    placeholder = load_tasks(out).tasks[0]
    assert placeholder.replay_only
    real = placeholder.model_copy(
        update={
            "replay_only": False,
            "problem_statement": "The real text",
            "patch": "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n",
            "FAIL_TO_PASS": ["tests/t.py::test_a"],
        }
    )
    task_file = save_tasks([real], tmp_path / "real.jsonl")
    assert import_table(FILES["csv"], "csv", store, task_file=task_file).tasks_from_file == 1
    after = {t.instance_id: t for t in load_tasks(out).tasks}
    assert after[real.instance_id].problem_statement == "The real text"
    assert not after[real.instance_id].replay_only and len(after) == 6
    import_table(FILES["csv"], "csv", store)  # without the task file: the full row stays
    assert {t.instance_id: t for t in load_tasks(out).tasks}[
        real.instance_id
    ].problem_statement == "The real text"


def test_the_printed_replay_command_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without the agents the env replays the built-in repair agents, which an imported store lacks:
    the summary now ends with the command that works."""
    import shlex

    store = tmp_path / "s.sqlite"
    assert main(["store", "import", str(FILES["csv"]), "--format", "csv", "--store", str(store)]) == 0
    hint = capsys.readouterr().out.splitlines()[-1]
    words = shlex.split(hint.removeprefix("replay it: "))
    assert words[:3] == ["hrm-spawn", "env", "check"]
    assert main([*words[1:], "--steps", "5"]) == 0
    assert "checks passed" in capsys.readouterr().out


def test_an_invalid_earlier_task_file_is_not_rewritten_without_its_bad_records(tmp_path: Path) -> None:
    """A re-import used to rewrite the task file with only its valid records: the rest were lost."""
    store = tmp_path / "s.sqlite"
    out = Path(f"{store}.tasks.jsonl")
    out.write_text('{"instance_id": "hand-edited", "repo": "a/b", "replay_only": true\n')  # truncated
    with pytest.raises(
        TableError, match=r"s\.sqlite\.tasks\.jsonl: the task file of an earlier import has 1 invalid"
    ):
        import_table(FILES["csv"], "csv", store)
    assert out.read_text() == '{"instance_id": "hand-edited", "repo": "a/b", "replay_only": true\n'
    assert not store.exists()


def test_a_map_file_may_name_agents_this_table_lacks(tmp_path: Path) -> None:
    """One map kept for several tables: an entry far from every agent of the table is listed, not an error."""
    report = import_table(
        FILES["csv"], "csv", tmp_path / "s.sqlite", "20250101_cheap=cheap,20240601_other_system=other"
    )
    assert report.per_agent == {"cheap@imported": 6}
    assert "in --agent-map, not in the table: 20240601_other_system" in report.lines()


# ---- a table in another harness's column names (SWE-Bench Pro runs: metadata.*, turns, no cost) -------

PRO_ROWS = [  # (instance id, model, resolved, turns)
    ("instance_acme__webkit-0123456789abcdef0123456789abcdef01234567", "Big Model", "true", 40),
    ("instance_acme__webkit-0123456789abcdef0123456789abcdef01234567", "Small Model", "false", 10),
    ("instance_numlab__solver-89abcdef0123456789abcdef0123456789abcdef", "Big Model", "false", 50),
    ("instance_numlab__solver-89abcdef0123456789abcdef0123456789abcdef", "Small Model", "true", 5),
]
PRO_COLUMNS = (
    "task=metadata.instance_id,agent=metadata.model_name,resolved=metadata.resolved,steps=metadata.turns"
)


def _pro_table(path: Path) -> Path:
    lines = ["agent_run_id,metadata.instance_id,metadata.model_name,metadata.resolved,metadata.turns,tag"]
    lines += [f"run{i},{t},{m},{r},{n}," for i, (t, m, r, n) in enumerate(PRO_ROWS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_columns_name_the_fields_and_prices_make_dollars_of_steps(tmp_path: Path) -> None:
    table = _pro_table(tmp_path / "runs.csv")
    store = tmp_path / "pro.sqlite"
    report = import_table(
        table,
        "csv",
        store,
        "Big Model=big,Small Model=small",
        columns=PRO_COLUMNS,
        price_per_step="Big Model=0.05,Small Model=0.01",
        task_text="repo",
    )
    assert (report.records, report.tasks, report.cost_unit) == (4, 2, "usd")
    assert report.cost_basis == "steps x USD per step (Big Model=0.05, Small Model=0.01)"
    got = _contents(store)
    webkit, solver = (t for t, *_ in PRO_ROWS[::2])
    assert got[(webkit, "big", "imported", 0)][:3] == (True, 1.0, pytest.approx(40 * 0.05))
    assert got[(solver, "small", "imported", 0)][:3] == (True, 1.0, pytest.approx(5 * 0.01))
    assert got[(solver, "big", "imported", 0)][:3] == (False, 0.0, pytest.approx(50 * 0.05))
    with OutcomeStore(store, readonly=True) as s:
        assert s.get_meta("cost_basis") == report.cost_basis
    tasks = {t.instance_id: t for t in load_tasks(report.tasks_out).tasks}
    assert tasks[webkit].repo == "acme/webkit" and tasks[webkit].replay_only
    assert tasks[webkit].problem_statement == "Repository acme/webkit."
    assert tasks[solver].problem_statement == "Repository numlab/solver."
    assert "cost basis: steps x USD per step" in "\n".join(report.lines())


def test_without_task_text_an_id_only_task_has_no_text(tmp_path: Path) -> None:
    report = import_table(
        _pro_table(tmp_path / "runs.csv"),
        "csv",
        tmp_path / "s.sqlite",
        columns=PRO_COLUMNS,
        price_per_step={"Big Model": 0.05, "Small Model": 0.01},
        agent_map="Big Model=big,Small Model=small",
    )
    assert all(t.problem_statement is None for t in load_tasks(report.tasks_out).tasks)


def test_the_cli_takes_columns_prices_and_task_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _pro_table(tmp_path / "runs.csv")
    argv = ["store", "import", str(table), "--format", "csv", "--store", str(tmp_path / "c.sqlite")]
    argv += ["--agent-map", "Big Model=big,Small Model=small", "--columns", PRO_COLUMNS]
    argv += ["--price-per-step", "Big Model=0.05,Small Model=0.01", "--task-text", "repo"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "imported 4 runs of 2 agents on 2 tasks" in out and "(cost unit: usd)" in out
    assert "cost basis: steps x USD per step (Big Model=0.05, Small Model=0.01)" in out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": "task=nope"}, r"--columns instance_id=nope: the header has no column 'nope'"),
        ({"columns": "colour=metadata.tag"}, r"--columns: 'colour' is not a field"),
        ({"columns": PRO_COLUMNS + ",id=tag"}, r"two columns for instance_id"),
        ({"columns": PRO_COLUMNS, "price_per_step": "Big Model=0.05"}, r"every run needs a cost"),
        ({"columns": PRO_COLUMNS, "price_per_step": "Big Model=-1"}, r"not a positive price"),
        ({"columns": PRO_COLUMNS, "price_per_step": "Big Model=x"}, r"'x' is not a number"),
        ({"columns": PRO_COLUMNS, "task_text": "all"}, r"--task-text must be one of none, repo"),
    ],
)
def test_bad_columns_and_prices_are_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    table = _pro_table(tmp_path / "runs.csv")
    kwargs.setdefault("price_per_step", "Big Model=0.05,Small Model=0.01")
    with pytest.raises(TableError, match=message):
        import_table(table, "csv", tmp_path / "x.sqlite", "Big Model=big,Small Model=small", **kwargs)
    assert not (tmp_path / "x.sqlite").exists()  # nothing half-imported


def test_a_priced_table_that_has_a_cost_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="the table has a cost; --price-per-step would replace it"):
        import_table(FILES["csv"], "csv", tmp_path / "x.sqlite", MAP, price_per_step="20250101_cheap=0.1")


def test_parse_columns_takes_aliases() -> None:
    assert parse_columns("task=a,model=b,turns=c") == {"instance_id": "a", "agent": "b", "steps": "c"}
    assert parse_columns(None) == {}
    with pytest.raises(TableError, match="not field=column"):
        parse_columns("task")


@pytest.mark.parametrize(
    ("parse", "spec", "message"),
    [
        (parse_agent_map, "a=b,c", r"^--agent-map: 'c' is not raw=name\[@version\]$"),
        (parse_agent_map, "=b", r"^--agent-map: '=b' is not raw=name\[@version\]$"),
        (parse_agent_map, "a=", r"^--agent-map: 'a=' is not raw=name\[@version\]$"),
        (parse_prices, "a=1,b", r"^--price-per-step: 'b' is not raw=USD$"),
        (parse_prices, "a=", r"^--price-per-step: 'a=' is not raw=USD$"),
    ],
)
def test_a_bad_pair_names_its_option_and_item(parse: Any, spec: str, message: str) -> None:
    with pytest.raises(TableError, match=message):
        parse(spec)


def test_a_raw_name_may_hold_an_equals_sign_in_a_price_not_in_a_map() -> None:
    assert parse_prices("a=b=0.5") == {"a=b": 0.5}
    with pytest.raises(TableError, match=r"'b=c' is not a plain agent name"):
        parse_agent_map("a=b=c")


def test_a_map_or_price_file_must_hold_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(TableError, match="an agent map is a mapping"):
        parse_agent_map(str(path))
    with pytest.raises(TableError, match="a price table is a mapping"):
        parse_prices(str(path))
    path.write_text("a: 0.25\n")
    assert parse_prices(str(path)) == {"a": 0.25}
