"""The package installs like a library: a wheel, installed into a fresh venv outside the checkout,
has its presets (package data) and its command line, and imports nothing from the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_runs_with_its_presets(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("hrm_spawn-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # The dependencies (torch, swe-rex, ...) come from this environment's site-packages as a plain path:
    # its .pth files (this checkout's editable finder among them) are not processed, so `hrm_spawn`
    # can only come from the wheel.
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = [sysconfig.get_paths()["purelib"], *(p for p in sys.path if p.endswith("site-packages"))]
    Path(site, "deps_from_test_env.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["HRM_SPAWN_HOME"] = str(tmp_path / "home")

    def run(*args: str) -> str:
        out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout

    where = run(str(py), "-c", "import hrm_spawn.envs.config as c; print(c.__file__); print(c.CONFIG_DIR)")
    assert str(ROOT) not in where and "site-packages" in where  # the installed copy, presets inside it
    # the validator package the repair agents copy into each sandbox ships in the wheel too
    shipped = run(
        str(py), "-c", "from hrm_spawn.envs.agents.repair import validator_files; print(*validator_files())"
    )
    assert {"launch.py", "job.py", "warm.py", "forking.py", "livecode.py"} <= {
        p.rsplit("/", 1)[-1] for p in shipped.split()
    }
    cli = str(venv / "bin" / "hrm-spawn")
    assert "total_params" in run(cli, "policy", "summary", "policy/hrm-tiny")
    assert "--tiny" in run(cli, "quickstart", "--help")
    assert run(cli, "--version").strip().endswith("0.1.0")
