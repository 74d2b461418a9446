"""Which agents resolve SWE-smith's removed-code bugs: each agent once per task, judged by Sandbox.evaluate.

Tasks: ``--tasks FILE``, default data_dir()/tasks/tinydb-removed.jsonl (skipped when absent; built with ``hrm-spawn tasks build --kinds remove_assign remove_cond remove_loop
remove_wrapper class_rm_base class_rm_funcs``); ``--limit N`` takes the first N. One JSON line per (task,
agent) goes to ``--out`` as soon as it is known (a rerun skips those already there), then the table: per
kind, how many tasks each agent resolves, the union, and each agent's share of the union.

``--matrix FILE`` (a solve_matrix.json) adds that matrix's agents' outcomes on the tasks it shares with
this run, so the union and the shares cover the mutation agents' kinds too (is any agent above 80 %?).
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import defaultdict
from pathlib import Path

from _agent_tasks import RESULTS, tinydb_tasks
from solve_matrix import kind_of

from hrm_spawn.envs.agents.registry import AGENT_SPECS, get_agent
from hrm_spawn.envs.agents.repair import SafetyLimitError
from hrm_spawn.envs.results import Budget
from hrm_spawn.envs.sandbox import Sandbox


def attempt(sb: Sandbox, task, name: str, seed: int, max_validations: int | None) -> dict:
    """One run of ``name`` on ``task`` from the buggy state, judged by the hidden tests."""
    sb.prepare(task) if sb.task is None or sb.task.instance_id != task.instance_id else sb.reset()
    budget = AGENT_SPECS[name].budget
    if max_validations:
        budget = Budget(**{**budget.to_dict(), "max_validations": max_validations})
    try:
        result = get_agent(name).run(sb, task, "", budget, seed)
    except SafetyLimitError as exc:  # the machine was too slow: no outcome (counted apart)
        return {
            "agent": name,
            "status": "safety_limit",
            "resolved": False,
            "f2p": "",
            "reason": str(exc)[:200],
        }
    evaluation = sb.evaluate(result.patch)
    return {
        "agent": name,
        "status": result.status,
        "resolved": evaluation.resolved,
        "f2p": f"{evaluation.f2p_passed}/{evaluation.f2p_total}",
        "validations": result.cost.validations,
        "sandbox_s": round(result.cost.sandbox_s, 1),
        "best": next((line for line in reversed(result.trajectory) if line.startswith("best:")), ""),
        "reason": result.reason[:200],
    }


def table(rows: list[dict], agents: list[str]) -> str:
    by_task: dict[str, dict[str, bool]] = defaultdict(dict)
    kinds: dict[str, str] = {}
    for row in rows:
        by_task[row["instance_id"]][row["agent"]] = row["resolved"]
        kinds[row["instance_id"]] = row["kind"]
    tasks = [t for t in by_task if all(a in by_task[t] for a in agents)]
    out = [f"| kind | tasks | {' | '.join(agents)} | union |", "|---" * (len(agents) + 3) + "|"]
    for kind in [*sorted({kinds[t] for t in tasks}), "all"]:
        group = [t for t in tasks if kind in ("all", kinds[t])]
        solved = {a: sum(by_task[t][a] for t in group) for a in agents}
        union = sum(any(by_task[t][a] for a in agents) for t in group)
        out.append(f"| {kind} | {len(group)} | {' | '.join(str(solved[a]) for a in agents)} | {union} |")
    union = sum(any(by_task[t][a] for a in agents) for t in tasks)
    shares = ", ".join(
        f"{a} {sum(by_task[t][a] for t in tasks) / union:.0%}" if union else f"{a} -" for a in agents
    )
    out.append(
        f"\n{len(tasks)} tasks; resolved by some agent: {union} ({union / max(1, len(tasks)):.0%}); "
        f"share of the union: {shares}"
    )
    return "\n".join(out)


def matrix_rows(path: Path) -> list[dict]:
    """(instance_id, kind, agent, resolved) of every single-agent run in a solve_matrix.json."""
    rows = []
    for row in json.loads(path.read_text())["rows"]:
        for agent, run in row["runs"].items():
            rows.append(
                {
                    "instance_id": row["instance_id"],
                    "kind": row["kind"],
                    "agent": agent,
                    "resolved": run["resolved"],
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--tasks",
        type=Path,
        default=None,
        help="default: data_dir()/tasks/tinydb-removed.jsonl (skipped if absent)",
    )
    parser.add_argument("--agents", default="surgery")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--offset", type=int, default=0, help="skip the first N tasks (to split a run)")
    parser.add_argument("--reverse", action="store_true", help="last task first (a second runner)")
    parser.add_argument("--max-validations", type=int, default=0, help="override every agent's count budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "removed_code.jsonl")
    parser.add_argument("--matrix", type=Path, default=None, help="a solve_matrix.json to join (see above)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    from hrm_spawn.envs.paths import tasks_dir

    found = tinydb_tasks(args.tasks or tasks_dir() / "tinydb-removed.jsonl")
    if not found:
        print(
            f"removed_code: no built tasks in {args.tasks or tasks_dir() / 'tinydb-removed.jsonl'} (skipped)"
        )
        return
    tasks = found[0][args.offset :][: args.limit or None]
    tasks = tasks[::-1] if args.reverse else tasks
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.is_file() else []
    have = {(r["instance_id"], r["agent"]) for r in done}
    with Sandbox() as sb, args.out.open("a") as fh:
        for task in tasks:
            for agent in agents:
                if (task.instance_id, agent) in have:
                    continue
                row = {
                    "instance_id": task.instance_id,
                    "kind": kind_of(task),
                    **attempt(sb, task, agent, args.seed, args.max_validations),
                }
                done.append(row)
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                print(
                    f"{task.instance_id} {agent}: resolved={row['resolved']} {row['f2p']} "
                    f"{row.get('validations')} validations {row.get('sandbox_s')}s {row['status']}",
                    flush=True,
                )
    ids = {t.instance_id for t in tasks}
    mine = [r for r in done if r["instance_id"] in ids and r["agent"] in agents]
    print(table(mine, agents))
    if args.matrix:
        theirs = [r for r in matrix_rows(args.matrix) if r["agent"] not in agents]
        names = list(dict.fromkeys(r["agent"] for r in theirs)) + agents
        print(f"\njoined with {args.matrix} (the tasks both cover):")
        print(table(mine + theirs, names))


if __name__ == "__main__":
    main()
