"""Checkpoints: safetensors weights + config YAML + optimizer/RNG state + counters, written atomically.

Layout of a run directory::

    RUN/checkpoints/step_000040/   policy.safetensors, policy.yaml, config.yaml, state.pt, meta.json
    RUN/checkpoints/latest         name of the newest complete checkpoint

A checkpoint is written to a temporary sibling directory and renamed into place, and ``latest`` is
replaced with ``os.replace``, so a run killed at any moment leaves the previous checkpoint intact.
``policy.safetensors`` + ``policy.yaml`` are what evaluation needs; ``state.pt`` (torch's format of our
own data: optimizer, RNG states, replay buffer) is only read by ``--resume``, with ``weights_only``
unpickling (tensors, numbers, strings, containers and numpy arrays; nothing that runs code), so a
tampered ``state.pt`` is refused rather than executed. docs/training.md, "What loading a checkpoint
trusts", lists what each file can do.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from hrm_spawn.envs.config import ConfigError, dump_config
from hrm_spawn.trainers.config import TrainConfig

CHECKPOINTS = "checkpoints"
LATEST = "latest"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or cannot be read; the message names the path."""


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_checkpoint(
    run_dir: Path,
    step: int,
    config: TrainConfig,
    weights: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``weights`` (name -> state dict; ``policy`` is required) and ``state`` as checkpoint ``step``."""
    if "policy" not in weights:
        raise ValueError("save_checkpoint: weights must contain a 'policy' state dict")
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        for key, tensors in weights.items():
            unique, aliases = _dedupe(tensors)
            save_file(unique, str(tmp / f"{key}.safetensors"), metadata={"aliases": json.dumps(aliases)})
        (tmp / "policy.yaml").write_text(dump_config(config.policy), encoding="utf-8")
        (tmp / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        torch.save(state, tmp / "state.pt")
        info = {"step": step, "seed": config.seed, "algo": config.algo, **(meta or {})}
        (tmp / "meta.json").write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
        final = root / name
        if final.exists():  # a re-run of the same step after a resume replaces the old copy
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_text_atomic(root / LATEST, name + "\n")
    return final


def _dedupe(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses tensors sharing memory (SB3 shares its extractor under three names): keep one
    copy and record the other names as aliases, restored by ``load_weights``."""
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, tensor in tensors.items():
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and ident in seen:
            aliases[name] = seen[ident]
            continue
        seen[ident] = name
        unique[name] = tensor.detach().cpu().contiguous()
    return unique, aliases


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None when it has none."""
    pointer = Path(run_dir) / CHECKPOINTS / LATEST
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text(encoding="utf-8").strip()
    return path if path.is_dir() else None


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a checkpoint directory or a run directory (-> its latest checkpoint)."""
    path = Path(path)
    if (path / "policy.safetensors").is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(
            f"{path}: not a checkpoint (no policy.safetensors) nor a run with checkpoints/latest"
        )
    return latest


def load_weights(ckpt: Path, key: str = "policy") -> dict[str, torch.Tensor]:
    file = Path(ckpt) / f"{key}.safetensors"
    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    from safetensors import safe_open

    tensors = load_file(str(file))
    with safe_open(str(file), framework="pt") as handle:
        aliases = json.loads((handle.metadata() or {}).get("aliases", "{}"))
    for alias, original in aliases.items():
        tensors[alias] = tensors[original]
    return tensors


def load_into(module: torch.nn.Module, ckpt: Path, what: str) -> None:
    """Load the checkpoint's policy weights into ``module``; a mismatch is an error naming both."""
    try:
        module.load_state_dict(load_weights(ckpt))
    except RuntimeError as exc:
        raise ConfigError(
            f"{ckpt}: weights do not fit {what} (trained with other agents, or with an older "
            f"feature layout?): {exc}"
        ) from None


def load_train_config(ckpt: Path) -> TrainConfig:
    file = Path(ckpt) / "config.yaml"
    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    return TrainConfig.model_validate(yaml.safe_load(file.read_text(encoding="utf-8")))


def _numpy_globals() -> list[Any]:
    """What unpickling numpy arrays (the replay buffer, numpy's RNG state) needs beyond torch's own."""
    from numpy._core.multiarray import _reconstruct

    dtypes = {type(np.dtype(t)) for t in (np.bool_, np.int64, np.int32, np.uint32, np.float32, np.float64)}
    return [np.ndarray, np.dtype, _reconstruct, *sorted(dtypes, key=lambda t: t.__name__)]


def load_state(ckpt: Path) -> dict[str, Any]:
    """The trainer's state (``--resume``), unpickled ``weights_only``: a file that asks to build any
    other object (a tampered ``state.pt`` that would run code) is a CheckpointError."""
    file = Path(ckpt) / "state.pt"
    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{file}: refused: it holds objects other than tensors, numbers, strings and numpy arrays "
            f"(not a state.pt this project wrote, or tampered with): {str(exc).splitlines()[-1][:300]}"
        ) from None


def prune_checkpoints(run_dir: Path, keep: int = 3) -> None:
    """Remove all but the newest ``keep`` checkpoints (never the one ``latest`` names)."""
    root = Path(run_dir) / CHECKPOINTS
    latest = latest_checkpoint(run_dir)
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else steps:
        if latest is None or old.resolve() != latest.resolve():
            shutil.rmtree(old, ignore_errors=True)
