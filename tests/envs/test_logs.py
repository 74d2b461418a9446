"""One handler, -v/-q levels, each warning once per run."""

from __future__ import annotations

import io
import logging
import warnings

import pytest

from hrm_spawn.envs.logs import flush_warnings, get_logger, level_for, setup_logging, teardown_logging


@pytest.fixture
def stream():
    saved = (logging.getLogger().handlers[:], logging.getLogger().level, warnings.showwarning)
    out = io.StringIO()
    with warnings.catch_warnings():
        yield out
    teardown_logging()
    root = logging.getLogger()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    warnings.showwarning = saved[2]


def _warn(i: int) -> None:
    warnings.warn(f"task t{i}: something odd", RuntimeWarning, stacklevel=1)  # one place, many messages


def test_a_warning_from_one_place_is_shown_once_then_counted(stream) -> None:
    setup_logging(0, stream)
    for i in range(5):
        _warn(i)
    flush_warnings()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "WARNING hrm_spawn.warnings: RuntimeWarning: task t0: something odd",
        "WARNING hrm_spawn.warnings: RuntimeWarning repeated 4 more time(s) this run: task t0: something odd",
    ]


def test_levels_and_a_single_handler(stream) -> None:
    setup_logging(0, stream)
    setup_logging(-1, stream)  # installing twice replaces, never doubles
    log = get_logger("hrm_spawn.envs.collect")
    log.info("hidden at -q")
    log.warning("shown")
    assert stream.getvalue() == "WARNING hrm_spawn.envs.collect: shown\n"
    assert [h.get_name() for h in logging.getLogger().handlers].count("hrm_spawn.cli") == 1
    assert level_for(1) == logging.DEBUG and level_for(0) == logging.INFO
    assert get_logger("mypkg").name == "hrm_spawn.mypkg"


def test_matplotlib_font_cache_messages_are_silenced(stream) -> None:
    setup_logging(2, stream)
    logging.getLogger("matplotlib.font_manager").warning("Matplotlib is building the font cache")
    logging.getLogger("matplotlib.font_manager").info("generated new fontManager")
    assert stream.getvalue() == ""


def test_teardown_gives_logging_and_warnings_back(stream) -> None:
    before = warnings.showwarning
    setup_logging(0, stream)
    assert warnings.showwarning is not before
    teardown_logging()
    assert warnings.showwarning is before
    assert "hrm_spawn.cli" not in [h.get_name() for h in logging.getLogger().handlers]


WORKERS = """
import multiprocessing as mp
import warnings

from hrm_spawn.envs.logs import flush_warnings, setup_logging, setup_worker_logging, teardown_logging


def job(i):
    warnings.warn(f"host execution (task {i})", RuntimeWarning, stacklevel=1)
    return i


if __name__ == "__main__":
    setup_logging(0)
    with mp.get_context("spawn").Pool(2, setup_worker_logging) as pool:
        assert sorted(pool.map(job, range(6), chunksize=1)) == list(range(6))
    job(99)
    flush_warnings()
    teardown_logging()
"""


def test_worker_processes_of_one_run_show_a_warning_once(tmp_path) -> None:
    import subprocess
    import sys

    script = tmp_path / "workers.py"
    script.write_text(WORKERS)
    err = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stderr
    shown = [line for line in err.splitlines() if "RuntimeWarning: host execution" in line]
    assert len(shown) == 1, err
    assert "warnings.warn(" not in err  # no source lines


def test_colour_codes_in_a_warning_do_not_reach_the_log(stream) -> None:
    """gymnasium's checker writes `\\x1b[33mWARN: ...\\x1b[0m`; a log file got the escape bytes."""
    setup_logging(0, stream)
    warnings.warn(
        "\x1b[33mWARN: A Box observation space minimum value is -infinity.\x1b[0m", UserWarning, stacklevel=1
    )
    assert stream.getvalue() == (
        "WARNING hrm_spawn.warnings: UserWarning: WARN: A Box observation space minimum value is -infinity.\n"
    )
