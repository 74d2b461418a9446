"""benchmarks/run_all.py on fake benchmark scripts: fresh figures go to --out, references stay put."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.benchmark_module import BENCH, benchmark_module


@pytest.fixture
def run_all():
    with benchmark_module("run_all.py") as module:
        yield module


FAKES = {
    "fast.py": (
        "from _results import write_result\n"
        "write_result('fast_per_s', 120.0, 'items/s', 100, True, {})\n"
        "write_result('lag_s', 0.6, 's', 0.5, False, {})\n"
    ),
    "gpu_only.py": "from _results import skip\nskip('gpu_only: no CUDA device here')\n",
    "broken.py": "raise RuntimeError('boom')\n",
    "_helper.py": "raise SystemExit('helpers are not benchmarks')\n",
}


def _record(name: str, value: float, goal: float, higher: bool) -> str:
    return json.dumps({"name": name, "value": value, "unit": "u", "goal": goal, "higher_is_better": higher})


@pytest.fixture
def folders(tmp_path: Path):
    scripts, reference, out = tmp_path / "scripts", tmp_path / "reference", tmp_path / "out"
    scripts.mkdir()
    reference.mkdir()
    for name, text in FAKES.items():
        (scripts / name).write_text(text)
    (reference / "fast_per_s.json").write_text(_record("fast_per_s", 100.0, 100, True))
    (reference / "lag_s.json").write_text(_record("lag_s", 0.5, 0.5, False))
    (reference / "old_figure.json").write_text(_record("old_figure", 3.0, 1, True))
    (out / "stale.json").parent.mkdir()
    (out / "stale.json").write_text(_record("stale", 1.0, 1, True))
    return scripts, reference, out


def test_fresh_figures_go_to_out_and_are_compared(run_all, folders, capsys, monkeypatch) -> None:
    scripts, reference, out = folders
    import os
    import time

    os.utime(out / "stale.json", (time.time() - 3600, time.time() - 3600))  # an earlier run's record
    before = {p.name: p.read_text() for p in reference.iterdir()}
    code = run_all.main(["--scripts", str(scripts), "--reference", str(reference), "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 1  # broken.py failed; the others still ran
    assert {p.name: p.read_text() for p in reference.iterdir()} == before  # references untouched
    assert json.loads((out / "fast_per_s.json").read_text())["value"] == 120.0
    rows = {
        r[0]: r for r in run_all.comparison_rows(run_all.read_records(out), run_all.read_records(reference))
    }
    assert rows["fast_per_s"][1:7] == ["items/s", "100.000", "120.000", "+20.0% (better)", "100", "yes"]
    assert rows["lag_s"][4:] == ["+20.0% (worse)", "0.500", "no"]  # lower is better here
    assert rows["old_figure"][3:] == ["not run", "-", "1", "yes (reference)"]
    assert "gpu_only.py: skipped (gpu_only: no CUDA device here)" in text
    assert "broken.py: failed (exit 1)" in text
    assert "helpers are not benchmarks" not in text
    assert "stale" not in text  # only this run's records are compared after a run
    assert "+20.0% (better)" in text and "fast_per_s" in text


def test_only_and_unknown_names(run_all, folders, capsys) -> None:
    scripts, reference, out = folders
    assert (
        run_all.main(
            ["--scripts", str(scripts), "--reference", str(reference), "--out", str(out), "--only", "fast"]
        )
        == 0
    )
    shown = capsys.readouterr().out
    assert "broken.py" not in shown
    assert "fast_per_s" in shown and "old_figure" not in shown  # only the figures asked for
    with pytest.raises(SystemExit, match="no benchmark named 'nope'"):
        run_all.main(["--scripts", str(scripts), "--out", str(out), "--only", "nope"])


def test_only_takes_a_file_name_and_suggests_the_meant_one(run_all, folders) -> None:
    scripts, _, out = folders
    assert [p.name for p in run_all.scripts_in(scripts, ["fast.py"])] == ["fast.py"]
    assert [p.name for p in run_all.scripts_in(scripts, [str(scripts / "fast.py")])] == ["fast.py"]
    with pytest.raises(
        SystemExit, match=r"no benchmark named 'fsat' \(did you mean 'fast'\?\).*broken, fast"
    ):
        run_all.scripts_in(scripts, ["fsat"])


def test_default_output_folder_is_under_the_data_dir(run_all, tmp_path, monkeypatch) -> None:
    import _results

    monkeypatch.delenv(_results.OUT_ENV, raising=False)
    monkeypatch.setenv("HRM_SPAWN_HOME", str(tmp_path / "home"))
    assert _results.results_dir() == tmp_path / "home" / "bench"
    monkeypatch.setenv(_results.OUT_ENV, str(tmp_path / "elsewhere"))
    assert _results.results_dir() == tmp_path / "elsewhere"
    assert _results.REFERENCE == BENCH / "results"
