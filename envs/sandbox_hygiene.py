"""What a sandbox leaves behind, found and removed: its processes, its folder, the folders of dead workers.

Every sandbox shell carries ``HRM_SANDBOX_ID=<id>`` in its environment, and every process it starts
inherits it, including ones that leave the shell's session (``setsid``) or process group (``nohup``,
``(cmd &)``). A process counts as the sandbox's when its environment holds that id or it belongs to the
shell's session; :func:`kill_script` kills all of them with one ``grep`` over ``/proc`` (no ``ps`` needed,
so it also runs in minimal images). Only a process that both empties its environment and leaves the
session escapes: run code you do not trust in the docker sandbox.

Each sandbox folder holds an ``owner.json`` (host, pid and start time of the owning process);
:func:`clean_stale_sandboxes` removes the folders whose owner is gone, e.g. a worker killed by the OOM
killer.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import time
from pathlib import Path

ID_VAR = "HRM_SANDBOX_ID"
OWNER_FILE = "owner.json"
# A folder without owner.json (older layout, or its owner died before writing it) is stale after this.
UNOWNED_STALE_S = 3600.0


def kill_script(sandbox_id: str, session_id: str, spare: str) -> str:
    """POSIX sh that SIGKILLs every process of the sandbox except ``spare`` (a pid, ``$$``, or "").

    The pid list is collected before any kill, so the scanning commands themselves are never targets.
    A second pass runs only when the first killed something: a process forking meanwhile leaves a child
    that it finds. Three forks per pass (a reset pays for one pass).
    """
    marker = shlex.quote(f"{ID_VAR}={sandbox_id}")
    # /proc/PID/stat: "pid (comm) state ppid pgrp session ..."; comm may hold spaces or ")", hence `.*) `.
    in_session = shlex.quote(rf"s/^\([0-9]*\) .*) . [0-9-]* [0-9-]* {int(session_id)} .*/\1/p")
    return (
        "for __hrm_pass in 1 2; do __hrm_hit=; "
        f"__hrm_pids=$(grep -lzsx {marker} /proc/[0-9]*/environ; sed -n {in_session} /proc/[0-9]*/stat 2>/dev/null); "
        "for __hrm_p in $__hrm_pids; do __hrm_p=${__hrm_p#/proc/}; __hrm_p=${__hrm_p%/environ}; "
        f'if [ "$__hrm_p" != "{spare}" ] && kill -9 "$__hrm_p" 2>/dev/null; then __hrm_hit=1; fi; done; '
        '[ -n "$__hrm_hit" ] || break; done; unset __hrm_pass __hrm_hit __hrm_pids __hrm_p; true'
    )


def owner_record() -> dict[str, object]:
    """Who owns a sandbox folder: this process on this host (with its start time, against pid reuse)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_ticks(os.getpid())}


def clean_stale_sandboxes(root: str | Path | None = None) -> int:
    """Remove the sandbox folders under ``root`` whose owning process is gone; return how many.

    ``root`` defaults to ``data_dir()/sandboxes``. A folder counts as stale when its ``owner.json`` names
    this host and a pid that no longer runs (or now runs another program), or when it has no owner file
    and was not touched for an hour. Processes still carrying a removed sandbox's id are killed first.
    Folders owned by other hosts (a shared file system) are left alone. Call it when a collector starts.
    """
    if root is None:
        from hrm_spawn.envs.paths import data_dir

        root = data_dir() / "sandboxes"
    root = Path(root)
    if not root.is_dir():
        return 0
    host, removed = socket.gethostname(), 0
    for folder in sorted(root.iterdir()):
        if folder.is_symlink() or not folder.is_dir() or not _is_stale(folder, host):
            continue
        kill_marked(folder.name)
        shutil.rmtree(folder, ignore_errors=True)
        removed += not folder.exists()
    return removed


def kill_marked(sandbox_id: str) -> int:
    """SIGKILL the processes of this host whose environment carries ``sandbox_id``; return how many."""
    needle = f"{ID_VAR}={sandbox_id}".encode()
    killed = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            os.kill(int(proc.name), signal.SIGKILL)
            killed += 1
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return killed


def _is_stale(folder: Path, host: str) -> bool:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
        pid, start = int(owner["pid"]), owner.get("start")
        owner_host = owner["host"]
    except FileNotFoundError:
        return _age_s(folder) > UNOWNED_STALE_S
    except (OSError, ValueError, KeyError, TypeError):  # unreadable or half-written: judge by age
        return _age_s(folder) > UNOWNED_STALE_S
    return owner_host == host and not _alive(pid, start)


def _age_s(folder: Path) -> float:
    try:
        return time.time() - folder.stat().st_mtime
    except OSError:
        return 0.0


def _alive(pid: int, start: object) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    now = _start_ticks(pid)
    return start is None or now is None or now == start


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None off Linux."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(") ", 1)[1].split()[19])
