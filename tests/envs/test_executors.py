"""The local pool under real faults: jobs of any kind, a worker that dies, a worker that hangs.

Every worker here is a real process; faults are real (``os._exit`` in the job, a job that sleeps past its
limit, a SIGKILL from outside, an agent stuck in ``time.sleep``). The collect tests read the store after.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hrm_spawn.envs.collect import collect, resolve_agents, runner_spec
from hrm_spawn.envs.executors import WORKER_DIED, WORKER_HUNG, LocalExecutor, run_all
from hrm_spawn.envs.results import AgentResult, Cost
from hrm_spawn.envs.sandbox import SandboxConfig
from hrm_spawn.envs.store import OutcomeStore

HERE = "test_executors"
HANG_S = 600.0  # far past any limit below: only the executor ends it


# -- a plain worker spec: no sandbox, so the executor's own behaviour is all there is ---------------------


@dataclass(frozen=True)
class Step:
    name: str
    action: str = "ok"  # ok | exit (the worker process dies) | sleep (the worker hangs)


class StepRunner:
    def run(self, job: Step) -> tuple[str, str, int]:
        if job.action == "exit":
            os._exit(3)
        if job.action == "sleep":
            time.sleep(HANG_S)
        return (job.name, "ok", os.getpid())

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class StepSpec:
    limit_s: float | None = None

    def build(self) -> StepRunner:
        return StepRunner()

    def failed(self, job: Step, kind: str, reason: str, worker: str) -> tuple[str, str, str]:
        return (job.name, kind, reason)

    def job_limit(self, job: Step) -> float | None:
        return self.limit_s


def test_any_job_runs_and_lost_workers_are_reported_and_replaced() -> None:
    jobs = [Step("a"), Step("dies", "exit"), Step("b"), Step("hangs", "sleep"), Step("c")]
    start = time.monotonic()
    with LocalExecutor(2, StepSpec(limit_s=3.0)) as pool:
        results = {r[0]: r for r in run_all(pool, jobs)}
        assert pool.capacity == 2
        # the pool works on after both losses: two fresh workers took the lost ones' places
        after = run_all(pool, [Step("d"), Step("e")])
    assert time.monotonic() - start < HANG_S / 4  # the hung job did not hold the pool
    assert {results[n][1] for n in "abc"} == {"ok"} and {r[1] for r in after} == {"ok"}
    assert results["dies"][1] == WORKER_DIED and "exited (code 3)" in results["dies"][2]
    assert results["hangs"][1] == WORKER_HUNG and "limit of 3 s" in results["hangs"][2]


def test_a_job_under_its_limit_is_not_stopped() -> None:
    with LocalExecutor(1, StepSpec(limit_s=30.0)) as pool:
        assert run_all(pool, [Step("a"), Step("b")])[1][:2] == ("b", "ok")


# -- collect with an agent that hangs its worker -------------------------------------------------------


def mark(name: str) -> None:
    with (Path(os.environ["HRM_TEST_MARKS"]) / name).open("a") as f:
        f.write(f"{os.getpid()}\n")


def marked(name: str) -> list[int]:
    path = Path(os.environ["HRM_TEST_MARKS"]) / name
    return [int(line) for line in path.read_text().splitlines()] if path.exists() else []


class Hang:
    """Alive but stuck: sleeps far past any limit (as an agent blocked on a lost connection would)."""

    name = "hang"
    version = "1"

    def run(self, sandbox, task, start_patch, budget, seed):
        mark("Hang")
        time.sleep(HANG_S)
        raise AssertionError("the executor stops a hung worker before this")


class Comment:
    name = "comment"
    version = "1"

    def run(self, sandbox, task, start_patch, budget, seed):
        mark("Comment")
        sandbox.run("echo '# comment' >> calc/compare.py")
        return AgentResult(patch=sandbox.diff(), status="ok", cost=Cost(sandbox_s=0.1), visible_pass_rate=0.0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(600)  # a hang fails the test instead of stalling CI
def test_a_hung_worker_is_stopped_and_its_job_is_a_failed_job(fixture_task, marks, tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    slots = resolve_agents([f"{HERE}:Hang", f"{HERE}:Comment"], None)
    # the derived limit is the agent's safety budget and more (minutes); a short one keeps the test short
    spec = dataclasses.replace(runner_spec(store, slots, SandboxConfig()), job_limit_s=60.0)
    assert runner_spec(store, slots, SandboxConfig()).job_limit(_job_of(slots[0])) >= 600 + 2 * 300
    start = time.monotonic()
    with LocalExecutor(2, spec) as pool:
        counts = collect([fixture_task], slots, store, seeds=1, depth=0, progress=False, executor=pool)
        assert pool.capacity == 2  # a fresh worker took the hung one's place
    assert time.monotonic() - start < HANG_S / 2  # collect returned long before the agent would have
    (hung_pid,) = marked("Hang")  # run once: a hung job is not retried
    assert not _alive(hung_pid)
    outcomes = {key.agent.split(":")[-1]: o for key, o in store.iter_task(fixture_task.instance_id)}
    assert set(outcomes) == {"Comment"} and outcomes["Comment"].result.status == "ok"
    (failed,) = store.failed_jobs()
    assert failed.key.agent.endswith("Hang") and (failed.kind, failed.attempts) == (WORKER_HUNG, 1)
    assert "after its limit of 60 s" in failed.reason
    assert counts.failed_by_kind == {WORKER_HUNG: 1} and counts.ran == 1 and counts.retried == 0
    assert store.leases() == []


def _job_of(slot):
    from hrm_spawn.envs.jobs import Job
    from hrm_spawn.envs.store import OutcomeKey

    return Job({}, slot.name, 0, "", OutcomeKey("t", slot.name, "1", 0))


# -- build validation whose worker is killed -----------------------------------------------------------


def _kill_workers(work_root: Path, times: int, after_s: float) -> threading.Thread:
    """Kill ``times`` validation workers in turn (found by the clone markers they write), each ``after_s``
    after it starts, so each dies mid-validation."""

    def loop() -> None:
        killed: set[int] = set()
        while len(killed) < times:
            pids = {int(m.name[1:]) for m in work_root.glob("w*")} - killed
            live = [p for p in pids if _alive(p)]
            if live:
                time.sleep(after_s)
                os.kill(live[0], 9)
                killed.add(live[0])
            time.sleep(0.1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


SLOW_TEST = """\
diff --git a/tests/test_slow.py b/tests/test_slow.py
new file mode 100644
--- /dev/null
+++ b/tests/test_slow.py
@@ -0,0 +1,4 @@
+import time
+
+def test_slow():
+    time.sleep(30)
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_validation_whose_worker_dies_twice_is_invalid_and_validated_again_next_run(fixture_repo, tmp_path):
    from hrm_spawn.envs.build_repo import baseline
    from hrm_spawn.envs.candidates import Candidate
    from hrm_spawn.envs.validation import Sidecar, ValidationSpec, Validator

    clean = baseline(fixture_repo)
    work_root = tmp_path / "work"
    work_root.mkdir()
    spec = ValidationSpec(
        dataclasses.asdict(fixture_repo),
        sorted(t for t in clean.status if clean.passed(t)),
        str(work_root),
        120.0,
    )
    cand = Candidate("slow0001", ["func_pm_op_change"], "calc/x.py::f", "calc/x.py", SLOW_TEST)
    sidecar = Sidecar(tmp_path / "t.jsonl.validation.jsonl", fixture_repo.base_commit)
    killer = _kill_workers(work_root, times=2, after_s=5.0)
    with LocalExecutor(1, spec) as pool:
        kept = Validator(pool, sidecar).select([cand], None, "slow")
    killer.join(timeout=5)
    sidecar.close()
    assert kept == []
    record = sidecar.records[cand.key]  # tried twice (the first loss is run once more), then invalid
    assert record["valid"] is False and record["failed"] == WORKER_DIED and "SIGKILL" in record["reason"]
    # the record is in the file, but a new run does not take it as known: it validates the candidate again
    assert '"failed": "worker_died"' in sidecar.path.read_text()
    assert cand.key not in Sidecar(sidecar.path, fixture_repo.base_commit).records
