"""One logging setup for the command line: one handler on stderr, ``-v``/``-q`` levels, warnings once.

On a terminal the handler is rich's (levels in colour); elsewhere (a log file, CI) plain one-line
records, because rich pads every line to the console width. Python warnings are routed into the same
handler as one line each (no source line), and a warning raised again from the same place during the
run is counted, not repeated: ``flush_warnings`` reports the counts at the end. Worker processes of
the same run (``setup_worker_logging`` in their initializer) share the "already shown" marks through
a run-scoped folder, so a warning every worker raises is still shown once.
No torch or trainers import: every module may use this.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import IO, Any

LOGGER = "hrm_spawn"
# Set by setup_logging for the run's child processes: the level and the shared "already warned" folder.
VERBOSITY_ENV = "HRM_SPAWN_LOG_VERBOSITY"
WARNED_ENV = "HRM_SPAWN_WARNED_DIR"
_HANDLER_NAME = "hrm_spawn.cli"
_PLAIN_FORMAT = "%(levelname)s %(name)s: %(message)s"


def level_for(verbosity: int) -> int:
    """-q and below: warnings only; default: info; -v: debug (ours); -vv: debug everywhere."""
    if verbosity < 0:
        return logging.WARNING
    return logging.INFO if verbosity == 0 else logging.DEBUG


def get_logger(name: str) -> logging.Logger:
    """``get_logger(__name__)``: a child of the ``hrm_spawn`` logger whatever the module's import name."""
    return logging.getLogger(name if name.startswith(LOGGER) else f"{LOGGER}.{name}")


def _make_handler(stream: IO[str]) -> logging.Handler:
    if stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=Console(file=stream), show_time=False, show_path=False, markup=False
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(_PLAIN_FORMAT))
    handler.set_name(_HANDLER_NAME)
    return handler


def setup_logging(verbosity: int = 0, stream: IO[str] | None = None) -> logging.Handler:
    """Install the handler (replacing one installed before), set levels, route warnings. Idempotent."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler = _make_handler(stream or sys.stderr)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)  # other libraries: warnings only
    logging.getLogger(LOGGER).setLevel(level_for(verbosity))
    # matplotlib announces building its font cache on first use; noise in every fresh run's output.
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    if not os.environ.get(WARNED_ENV):  # a worker reuses its run's folder
        os.environ[WARNED_ENV] = tempfile.mkdtemp(prefix="hrm-spawn-warned-")
    os.environ[VERBOSITY_ENV] = str(verbosity)
    _ONCE.install()
    return handler


def setup_worker_logging() -> None:
    """In a worker process's initializer: the parent run's handler, level and shared warning marks."""
    if os.environ.get(VERBOSITY_ENV) is not None:
        setup_logging(int(os.environ[VERBOSITY_ENV]))


def teardown_logging() -> None:
    """Remove the handler and give warnings back to Python (after a command run in-process)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    _ONCE.uninstall()
    folder = os.environ.pop(WARNED_ENV, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    os.environ.pop(VERBOSITY_ENV, None)


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _WarningsOnce:
    """``warnings.showwarning`` that logs the first warning from each place and counts the rest."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, int], list[Any]] = {}  # place -> [first message, repeats]

    def install(self) -> None:
        self.seen.clear()
        if warnings.showwarning != self.show:  # bound methods: equal, never identical
            self._saved = warnings.showwarning
        warnings.showwarning = self.show

    def uninstall(self) -> None:
        if warnings.showwarning == self.show:
            warnings.showwarning = getattr(self, "_saved", warnings._showwarning_orig)  # type: ignore[attr-defined]

    def show(
        self, message: Any, category: type[Warning], filename: str, lineno: int, *_: Any, **__: Any
    ) -> None:
        place = (category.__name__, filename, lineno)
        if place in self.seen:
            self.seen[place][1] += 1
            return
        text = _ANSI_ESCAPE.sub("", str(message))  # gymnasium colours its warnings: escapes in log files
        self.seen[place] = [text, 0]
        if _first_in_run(place):
            logging.getLogger(f"{LOGGER}.warnings").warning("%s: %s", category.__name__, text)

    def flush(self) -> None:
        for place, entry in self.seen.items():
            message, repeats = entry
            if repeats:
                logging.getLogger(f"{LOGGER}.warnings").warning(
                    "%s repeated %d more time(s) this run: %s", place[0], repeats, message[:120]
                )
            entry[1] = 0


def _first_in_run(place: tuple[str, str, int]) -> bool:
    """True for the first process of the run to warn from ``place`` (an exclusive-create mark file)."""
    folder = os.environ.get(WARNED_ENV)
    if not folder:
        return True
    mark = Path(folder) / hashlib.sha1(repr(place).encode()).hexdigest()
    try:
        os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    except OSError:  # the folder is gone (the run ended): show it rather than lose it
        return True
    return True


_ONCE = _WarningsOnce()


def flush_warnings() -> None:
    """Report how often each warning repeated (called once at the end of a command)."""
    _ONCE.flush()
