"""OutcomeStore: the cache of agent runs that makes training cheap.

A live agent run happens once; afterwards replay is a lookup. Key: (instance, agent, agent version,
seed, start-patch hash) -> the AgentResult plus the hidden evaluation of its candidate.

SQLite in WAL mode: readers never block the writer, several writer processes serialise on short
``BEGIN IMMEDIATE`` transactions (one row each), and ``busy_timeout`` makes them wait instead of
failing. A process killed with SIGKILL loses at most the row it was writing: every committed row is in
the WAL and SQLite recovers it on the next open.

Beside the outcomes (schema version 2; a version-1 store is migrated in place on its first writable open):

- ``failed_jobs``: jobs that ended in an infrastructure failure (see :mod:`hrm_spawn.envs.jobs`), with
  kind, reason and attempts. Never outcomes: a resume runs them again, and storing the job's outcome
  later removes its row.
- ``leases``: which collector runs which job now. A lease has an owner, an expiry and a heartbeat; a
  collector renews its leases while it lives, so the lease of a dead collector expires and another one
  takes the job. Two collectors on one store therefore never run the same job at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hrm_spawn.envs.results import AgentResult, Evaluation

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1 lacks failed_jobs and leases; migrated on open
CLEAN = "clean"
COST_UNITS = ("test_runs", "usd", "tokens")
DEFAULT_COST_UNIT = "test_runs"


class StoreError(RuntimeError):
    """A store file that cannot be used (unknown schema version, not a store)."""


def patch_sha(patch: str) -> str:
    """A short content hash of a patch; the empty patch (the clean buggy repository) is ``"clean"``."""
    if not patch:
        return CLEAN
    return hashlib.sha256(patch.encode("utf-8", "surrogatepass")).hexdigest()[:20]


@dataclass(frozen=True)
class OutcomeKey:
    instance_id: str
    agent: str
    agent_version: str
    seed: int
    start_patch_sha: str = CLEAN

    def __str__(self) -> str:
        return (
            f"(instance={self.instance_id!r}, agent={self.agent!r}, version={self.agent_version!r}, "
            f"seed={self.seed}, start_patch={self.start_patch_sha!r})"
        )


@dataclass
class Outcome:
    result: AgentResult
    evaluation: Evaluation
    created_at: float = 0.0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outcomes (
    instance_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    seed INTEGER NOT NULL,
    start_patch_sha TEXT NOT NULL,
    result TEXT NOT NULL,
    evaluation TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (instance_id, agent, agent_version, seed, start_patch_sha)
);
CREATE TABLE IF NOT EXISTS failed_jobs (
    instance_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    seed INTEGER NOT NULL,
    start_patch_sha TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL,
    PRIMARY KEY (instance_id, agent, agent_version, seed, start_patch_sha)
);
CREATE TABLE IF NOT EXISTS leases (
    instance_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    seed INTEGER NOT NULL,
    start_patch_sha TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    PRIMARY KEY (instance_id, agent, agent_version, seed, start_patch_sha)
);
"""

_KEY_WHERE = "instance_id=? AND agent=? AND agent_version=? AND seed=? AND start_patch_sha=?"


@dataclass
class FailedJob:
    """A job that ended in an infrastructure failure: no outcome, run again on the next collect."""

    key: OutcomeKey
    kind: str
    reason: str
    attempts: int
    failed_at: float


@dataclass
class Lease:
    key: OutcomeKey
    owner: str
    expires_at: float
    heartbeat_at: float


class OutcomeStore:
    """One SQLite connection per process (re-opened lazily after a fork)."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0, readonly: bool = False):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        if readonly and not self.path.is_file():
            raise StoreError(f"outcome store {self.path} does not exist")
        self._connect()

    # -- connection --------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if not self.readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.timeout_s, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            if not self.readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode survives a killed process (not a power cut), and is much faster.
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.executescript(_SCHEMA)
            self._check_version(conn)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable outcome store ({exc})") from exc
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        if not self.readonly:
            with _transaction(conn):
                conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
                # version 1 -> 2 only added tables, which the schema script above has just created
                conn.execute(
                    "UPDATE meta SET value=? WHERE key='schema_version' AND value IN ('1')",
                    (str(SCHEMA_VERSION),),
                )
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else None
        if version not in READABLE_VERSIONS:
            raise StoreError(
                f"{self.path}: outcome store schema version {version}, this code reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))} (written by a newer hrm-spawn? use that version or a fresh store)"
            )

    def _has_table(self, name: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)
        ).fetchone()
        return row is not None

    def _writable(self) -> sqlite3.Connection:
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        return self.conn

    @property
    def conn(self) -> sqlite3.Connection:
        return self._connect()

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __enter__(self) -> OutcomeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # a store crosses process boundaries as its path; each process opens its own connection
        return {"path": self.path, "timeout_s": self.timeout_s, "readonly": self.readonly}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _conn=None, _pid=-1)

    # -- records -----------------------------------------------------------------------------------
    def get(self, key: OutcomeKey) -> Outcome | None:
        row = self.conn.execute(
            "SELECT result, evaluation, created_at FROM outcomes WHERE instance_id=? AND agent=? "
            "AND agent_version=? AND seed=? AND start_patch_sha=?",
            _key_tuple(key),
        ).fetchone()
        return _outcome(row) if row else None

    def contains(self, key: OutcomeKey) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM outcomes WHERE instance_id=? AND agent=? AND agent_version=? AND seed=? "
            "AND start_patch_sha=?",
            _key_tuple(key),
        ).fetchone()
        return row is not None

    def put(self, key: OutcomeKey, outcome: Outcome) -> None:
        """Store (or replace) an outcome; the job's failure record and lease go with it."""
        conn = self._writable()
        created = outcome.created_at or time.time()
        row = (
            *_key_tuple(key),
            json.dumps(outcome.result.to_dict()),
            json.dumps(outcome.evaluation.to_dict()),
            created,
        )
        with _transaction(conn):
            conn.execute("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            conn.execute(f"DELETE FROM failed_jobs WHERE {_KEY_WHERE}", _key_tuple(key))
            conn.execute(f"DELETE FROM leases WHERE {_KEY_WHERE}", _key_tuple(key))

    def created_at(self, key: OutcomeKey) -> float | None:
        row = self.conn.execute(
            f"SELECT created_at FROM outcomes WHERE {_KEY_WHERE}", _key_tuple(key)
        ).fetchone()
        return row[0] if row else None

    def get_or_run(self, key: OutcomeKey, run_fn: Callable[[], Outcome]) -> Outcome:
        """Cached mode: the stored outcome, or run, record and return a new one."""
        found = self.get(key)
        if found is not None:
            return found
        outcome = run_fn()
        self.put(key, outcome)
        return outcome

    def find_evaluation(self, instance_id: str, patch: str) -> Evaluation | None:
        """The hidden evaluation of ``patch`` on this task, if any stored run submitted the same patch.

        A verdict that an infrastructure fault produced (a timed-out test run, in rows written before the
        line of :func:`hrm_spawn.envs.jobs.infrastructure_fault` existed) is never reused.
        """
        from hrm_spawn.envs.failures import evaluation_fault

        rows = self.conn.execute(
            "SELECT evaluation FROM outcomes WHERE instance_id=? AND json_extract(result, '$.patch')=?",
            (instance_id, patch),
        )
        for (text,) in rows:
            evaluation = Evaluation.from_dict(json.loads(text))
            if evaluation_fault(evaluation) is None:
                return evaluation
        return None

    def iter_task(self, instance_id: str) -> Iterator[tuple[OutcomeKey, Outcome]]:
        rows = self.conn.execute(
            "SELECT instance_id, agent, agent_version, seed, start_patch_sha, result, evaluation, created_at "
            "FROM outcomes WHERE instance_id=? ORDER BY agent, agent_version, seed, start_patch_sha",
            (instance_id,),
        ).fetchall()
        for row in rows:
            yield OutcomeKey(*row[:5]), _outcome(row[5:])

    def keys(self, instance_id: str | None = None) -> set[OutcomeKey]:
        sql = "SELECT instance_id, agent, agent_version, seed, start_patch_sha FROM outcomes"
        rows = (
            self.conn.execute(sql + " WHERE instance_id=?", (instance_id,))
            if instance_id
            else self.conn.execute(sql)
        )
        return {OutcomeKey(*row) for row in rows}

    # -- metadata: what the numbers mean (e.g. the cost unit of imported outcomes) ------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def cost_unit(self) -> str:
        """What an outcome's cost is counted in: ``test_runs`` (sandbox seconds / the task's test_run_s,
        outcomes collected here) unless the store says otherwise (``usd``, ``tokens``: imported tables)."""
        return self.get_meta("cost_unit") or DEFAULT_COST_UNIT

    def tasks(self) -> list[str]:
        return [
            r[0] for r in self.conn.execute("SELECT DISTINCT instance_id FROM outcomes ORDER BY instance_id")
        ]

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]

    # -- failed jobs ---------------------------------------------------------------------------------
    def record_failure(self, key: OutcomeKey, kind: str, reason: str, attempts: int = 1) -> None:
        """Note that ``key`` failed for a reason outside the agent (``attempts`` more tries, summed)."""
        conn = self._writable()
        with _transaction(conn):
            conn.execute(
                "INSERT INTO failed_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (instance_id, agent, agent_version, seed, start_patch_sha) DO UPDATE SET "
                "kind=excluded.kind, reason=excluded.reason, attempts=attempts + excluded.attempts, "
                "failed_at=excluded.failed_at",
                (*_key_tuple(key), kind, reason, int(attempts), time.time()),
            )

    def failed_jobs(self, instance_id: str | None = None) -> list[FailedJob]:
        if not self._has_table("failed_jobs"):  # a version-1 store opened read-only
            return []
        sql = "SELECT instance_id, agent, agent_version, seed, start_patch_sha, kind, reason, attempts, failed_at "
        sql += "FROM failed_jobs" + (" WHERE instance_id=?" if instance_id else "") + " ORDER BY failed_at"
        rows = self.conn.execute(sql, (instance_id,) if instance_id else ()).fetchall()
        return [FailedJob(OutcomeKey(*r[:5]), *r[5:]) for r in rows]

    def failed_job(self, key: OutcomeKey) -> FailedJob | None:
        return next((f for f in self.failed_jobs(key.instance_id) if f.key == key), None)

    # -- leases ----------------------------------------------------------------------------------------
    def try_lease(self, key: OutcomeKey, owner: str, ttl_s: float, replacing: float | None = None) -> bool:
        """Take the job ``key`` for ``owner`` for ``ttl_s`` seconds; False when someone else holds it.

        Also False when an outcome is stored for the key, unless it is the very row the caller means to
        replace (its ``created_at`` is ``replacing``): a job another collector finished in the meantime is
        never run again.
        """
        conn = self._writable()
        now = time.time()
        with _transaction(conn):
            stored = conn.execute(
                f"SELECT created_at FROM outcomes WHERE {_KEY_WHERE}", _key_tuple(key)
            ).fetchone()
            if stored is not None and stored[0] != replacing:
                return False
            held = conn.execute(
                f"SELECT owner, expires_at FROM leases WHERE {_KEY_WHERE}", _key_tuple(key)
            ).fetchone()
            if held is not None and held[0] != owner and held[1] > now:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*_key_tuple(key), owner, now + ttl_s, now),
            )
        return True

    def renew_leases(self, owner: str, ttl_s: float) -> int:
        """The heartbeat: push the expiry of every lease ``owner`` holds; returns how many."""
        conn = self._writable()
        now = time.time()
        with _transaction(conn):
            cursor = conn.execute(
                "UPDATE leases SET expires_at=?, heartbeat_at=? WHERE owner=?", (now + ttl_s, now, owner)
            )
        return cursor.rowcount

    def release_lease(self, key: OutcomeKey, owner: str) -> None:
        conn = self._writable()
        with _transaction(conn):
            conn.execute(f"DELETE FROM leases WHERE {_KEY_WHERE} AND owner=?", (*_key_tuple(key), owner))

    def lease(self, key: OutcomeKey) -> Lease | None:
        """The live lease on ``key``, if any (an expired one is as good as none)."""
        if not self._has_table("leases"):
            return None
        row = self.conn.execute(
            f"SELECT owner, expires_at, heartbeat_at FROM leases WHERE {_KEY_WHERE} AND expires_at > ?",
            (*_key_tuple(key), time.time()),
        ).fetchone()
        return Lease(key, *row) if row else None

    def leases(self) -> list[Lease]:
        if not self._has_table("leases"):
            return []
        rows = self.conn.execute(
            "SELECT instance_id, agent, agent_version, seed, start_patch_sha, owner, expires_at, heartbeat_at "
            "FROM leases ORDER BY expires_at"
        ).fetchall()
        return [Lease(OutcomeKey(*r[:5]), *r[5:]) for r in rows]


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One short write transaction; BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlock)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _key_tuple(key: OutcomeKey) -> tuple:
    return (key.instance_id, key.agent, key.agent_version, int(key.seed), key.start_patch_sha)


def _outcome(row: tuple) -> Outcome:
    result, evaluation, created = row
    return Outcome(
        AgentResult.from_dict(json.loads(result)), Evaluation.from_dict(json.loads(evaluation)), created
    )
