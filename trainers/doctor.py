"""``hrm-spawn doctor``: what this machine offers for training and sandboxes."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import platform
import shutil
import subprocess

from rich.console import Console
from rich.table import Table


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def _torch_rows() -> list[tuple[str, str]]:
    try:
        import torch
    except ImportError:
        return [("torch", "not installed"), ("CUDA", "unknown (no torch)")]
    if torch.cuda.is_available():
        cuda = f"yes, {torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    else:
        cuda = "no (CPU only)"
    return [("torch", torch.__version__), ("CUDA", cuda)]


def _docker_engine() -> str:
    if not shutil.which("docker"):
        return "no docker client"
    try:
        out = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"client only ({exc.__class__.__name__})"
    if out.returncode == 0 and out.stdout.strip():
        return f"engine {out.stdout.strip()}"
    return "client only, no engine reachable"


def _images() -> str:
    """How many of the docker sandbox's images (hrm-spawn/*) this engine holds; `make images` builds them."""
    if not shutil.which("docker"):
        return "no docker client"
    try:
        out = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}", "hrm-spawn/*"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc.__class__.__name__})"
    if out.returncode != 0:
        return "unknown (no engine reachable)"
    names = sorted(set(out.stdout.split()))
    return f"{len(names)}: {', '.join(names)}" if names else "none (build them: make images)"


def doctor_rows() -> list[tuple[str, str]]:
    rows = [("Python", f"{platform.python_version()} ({platform.machine()})")]
    rows += _torch_rows()
    rows += [
        ("flash-attn", _version("flash-attn")),
        ("Docker", _docker_engine()),
        ("swe-rex", _version("swe-rex")),
        ("swesmith", _version("swesmith")),
        ("swebench", _version("swebench")),
        ("gymnasium", _version("gymnasium")),
        ("stable-baselines3", _version("stable-baselines3")),
        ("sb3-contrib", _version("sb3-contrib")),
        ("Ray (collect --backend ray)", _version("ray")),
        ("mini-swe-agent (llm agent)", _version("mini-swe-agent")),
        ("litellm (llm agent)", _version("litellm")),
        ("docker sandbox images", _images()),
    ]
    return rows


def cli_doctor(args: argparse.Namespace) -> int:
    from hrm_spawn.envs.paths import data_dir

    table = Table(title="hrm-spawn doctor")
    table.add_column("component")
    table.add_column("status")
    for name, status in doctor_rows() + [("data dir", str(data_dir()))]:
        table.add_row(name, status)
    Console().print(table)
    return 0
