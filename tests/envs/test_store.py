"""OutcomeStore: round trip, schema version, several writer processes, a writer killed with SIGKILL."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrm_spawn.envs.results import AgentResult, Cost, Evaluation
from hrm_spawn.envs.store import SCHEMA_VERSION, Outcome, OutcomeKey, OutcomeStore, StoreError, patch_sha

ROOT = Path(__file__).resolve().parents[2]


def make_outcome(i: int, patch: str = "") -> Outcome:
    result = AgentResult(
        patch=patch or f"--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a{i}\n+b{i}\n",
        status="ok",
        cost=Cost(sandbox_s=1.5 + i, validations=i),
        visible_pass_rate=0.5,
        agent="a",
        seed=i,
    )
    return Outcome(result, Evaluation(f2p_passed=1, f2p_total=2, p2p_passed=3, p2p_total=3))


def key(i: int, start: str = "") -> OutcomeKey:
    return OutcomeKey("task-1", "op-flip", "1", i, patch_sha(start))


def test_patch_sha():
    assert patch_sha("") == "clean"
    assert patch_sha("x") == patch_sha("x") != patch_sha("y")


def test_round_trip_and_queries(tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    assert store.get(key(0)) is None and not store.contains(key(0))
    store.put(key(0), make_outcome(0))
    store.put(key(1, "some patch"), make_outcome(1))
    store.put(OutcomeKey("task-2", "swap", "2", 0), make_outcome(2))
    got = store.get(key(0))
    assert got.result.cost.sandbox_s == 1.5 and got.evaluation.pass_rate == pytest.approx(0.5)
    assert got.created_at > 0
    assert store.contains(key(1, "some patch")) and not store.contains(key(1))
    assert store.tasks() == ["task-1", "task-2"]
    assert {k for k, _ in store.iter_task("task-1")} == {key(0), key(1, "some patch")}
    assert len(store) == 3
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_find_evaluation_matches_the_task_and_the_exact_patch(tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    store.put(key(0), make_outcome(0, patch="P"))
    store.put(OutcomeKey("task-2", "swap", "2", 0), make_outcome(1, patch="Q"))
    found = store.find_evaluation("task-1", "P")
    assert found is not None and found.pass_rate == pytest.approx(0.5)
    assert store.find_evaluation("task-1", "Q") is None  # Q was judged on another task
    assert store.find_evaluation("task-1", "P\n") is None  # not the same patch


def test_get_or_run_runs_once(tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    calls = []

    def run():
        calls.append(1)
        return make_outcome(7)

    first = store.get_or_run(key(7), run)
    second = store.get_or_run(key(7), run)
    assert len(calls) == 1 and second.result.patch == first.result.patch


def test_newer_schema_is_a_clear_error(tmp_path):
    path = tmp_path / "s.sqlite"
    OutcomeStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match="schema version"):
        OutcomeStore(path)


def test_not_a_store_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable outcome store"):
        OutcomeStore(path)


def _writer(path: str, worker: int, n: int) -> None:
    store = OutcomeStore(path)
    for i in range(n):
        store.put(OutcomeKey(f"task-{worker}", "a", "1", i), make_outcome(i))


def test_several_writer_processes(tmp_path):
    path = str(tmp_path / "s.sqlite")
    OutcomeStore(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = OutcomeStore(path)
    assert len(store) == 120 and store.tasks() == ["task-0", "task-1", "task-2"]


KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from hrm_spawn.envs.results import AgentResult, Cost, Evaluation
from hrm_spawn.envs.store import Outcome, OutcomeKey, OutcomeStore
store = OutcomeStore({path!r})
i = 0
while True:
    store.put(OutcomeKey("t", "a", "1", i),
              Outcome(AgentResult("p" * 2000 + str(i), "ok", Cost(sandbox_s=i)), Evaluation(1, 1, 1, 1)))
    print(i, flush=True)
    i += 1
    time.sleep(0.002)
"""


def test_sigkill_mid_collection_keeps_store_readable(tmp_path):
    path = str(tmp_path / "s.sqlite")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT.format(root=str(ROOT), path=path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    done = -1
    deadline = time.time() + 60
    while done < 50 and time.time() < deadline:
        done = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    store = OutcomeStore(path)
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = len(store)
    # every put that returned is there; at most the one in flight (plus one printed late) is extra
    assert stored >= done + 1
    for i in range(done + 1):
        assert store.get(OutcomeKey("t", "a", "1", i)).result.cost.sandbox_s == i
    store.put(OutcomeKey("t", "a", "1", 10_000), make_outcome(1))  # writable again


def test_failed_jobs_add_up_and_an_outcome_clears_them(tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    store.record_failure(key(0), "endpoint", "endpoint unreachable: http://127.0.0.1:9/v1")
    store.record_failure(key(0), "sandbox_died", "EOF", attempts=2)
    (failed,) = store.failed_jobs()
    assert (failed.key, failed.kind, failed.attempts) == (key(0), "sandbox_died", 3)
    assert len(store) == 0 and store.get(key(0)) is None  # a failure is never an outcome
    store.put(key(0), make_outcome(0))
    assert store.failed_jobs() == [] and store.failed_job(key(0)) is None


def test_a_lease_excludes_others_until_it_expires_or_is_released(tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    other = OutcomeStore(tmp_path / "s.sqlite")  # a second collector's connection
    assert store.try_lease(key(0), "a", ttl_s=60)
    assert not other.try_lease(key(0), "b", ttl_s=60) and store.try_lease(key(0), "a", ttl_s=60)
    assert other.lease(key(0)).owner == "a"
    store.release_lease(key(0), "a")
    assert other.try_lease(key(0), "b", ttl_s=0.2)
    # b dies: it stops renewing, so its lease runs out and a takes the job
    deadline = time.time() + 10
    while not store.try_lease(key(0), "a", ttl_s=60):
        assert time.time() < deadline
        time.sleep(0.05)
    assert store.renew_leases("a", ttl_s=60) == 1 and store.renew_leases("b", ttl_s=60) == 0
    store.put(key(0), make_outcome(0))  # storing the outcome ends the lease
    assert store.leases() == []
    assert not other.try_lease(key(0), "b", ttl_s=60)  # a stored job is never leased again
    created = store.created_at(key(0))
    assert other.try_lease(key(0), "b", ttl_s=60, replacing=created)  # unless replacing that very row


def test_a_timed_out_verdict_is_never_reused(tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    stale = make_outcome(0, patch="P")  # a row from before the line: its test run timed out
    stale.evaluation = Evaluation(0, 2, 0, 3, error="test run timed out")
    store.put(key(0), stale)
    assert store.find_evaluation("task-1", "P") is None
    store.put(key(1), make_outcome(1, patch="P"))
    assert store.find_evaluation("task-1", "P").error is None


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE outcomes (
    instance_id TEXT NOT NULL, agent TEXT NOT NULL, agent_version TEXT NOT NULL, seed INTEGER NOT NULL,
    start_patch_sha TEXT NOT NULL, result TEXT NOT NULL, evaluation TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (instance_id, agent, agent_version, seed, start_patch_sha)
);
INSERT INTO meta VALUES ('schema_version', '1');
"""


def test_a_version_1_store_is_read_and_migrated_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
    with sqlite3.connect(path) as conn:  # one row written by the old code
        outcome = make_outcome(3)
        conn.execute(
            "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "task-1",
                "op-flip",
                "1",
                3,
                "clean",
                json.dumps(outcome.result.to_dict()),
                json.dumps(outcome.evaluation.to_dict()),
                1.0,
            ),
        )
    readonly = OutcomeStore(path, readonly=True)  # read as it is: no tables added, none needed
    assert readonly.get(key(3)).result.patch == outcome.result.patch and readonly.failed_jobs() == []
    readonly.close()
    store = OutcomeStore(path)
    assert store.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    assert store.get(key(3)).result.patch == outcome.result.patch and len(store) == 1
    store.record_failure(key(4), "transport", "ServerDisconnectedError")
    assert store.try_lease(key(5), "a", ttl_s=60) and len(store.failed_jobs()) == 1
