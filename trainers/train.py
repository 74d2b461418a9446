"""hrm-spawn train CONFIG [key=value ...] [--out DIR] [--resume | --force]

Dispatch and command line only: the config is validated, the run directory checked, and the run handed
to the algorithm's module (trainers/act_q.py or trainers/ppo.py), which builds the env the config names,
logs to TensorBoard under ``RUN/tb`` and writes checkpoints under ``RUN/checkpoints``
(trainers/checkpoint.py). ``--resume`` reloads the latest checkpoint of RUN and continues where the
killed run stopped; an existing non-empty ``--out`` is refused unless ``--resume`` or ``--force`` says
what to do with it, and all of this is checked before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hrm_spawn.envs.config import ConfigError, dump_config, load_config
from hrm_spawn.trainers.checkpoint import latest_checkpoint, load_train_config
from hrm_spawn.trainers.config import TrainConfig
from hrm_spawn.trainers.runtime import default_run_dir


def run_training(config: TrainConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> Path:
    """Train as ``config.algo`` says into ``run_dir``; returns the last checkpoint."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    if config.algo == "ppo":
        from hrm_spawn.trainers.ppo import train_ppo

        return train_ppo(config, run_dir, resume=resume, progress=progress)
    from hrm_spawn.trainers.act_q import train_act_q

    return train_act_q(config, run_dir, resume=resume, progress=progress)


def _config_and_run_dir(args: argparse.Namespace) -> tuple[TrainConfig, Path]:
    """The validated config and the run directory, or a ConfigError; nothing is written."""
    force = bool(getattr(args, "force", False))
    if args.resume and force:
        raise ConfigError("--resume continues the run in --out, --force starts it over: give one of them")
    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
        ckpt = latest_checkpoint(Path(args.out))
        if ckpt is None:
            raise ConfigError(f"--resume: {args.out} has no checkpoint to continue from")
        if args.overrides:
            print("note: overrides are ignored with --resume; the run's own config is used", file=sys.stderr)
        return load_train_config(ckpt), Path(args.out)
    if not args.config:
        raise ConfigError("train needs a CONFIG (a preset such as trainers/act_q, or a YAML path)")
    config = load_config(TrainConfig, args.config, args.overrides)
    run_dir = Path(args.out) if args.out else default_run_dir(config)
    if run_dir.exists() and any(run_dir.iterdir()) and not force:
        raise ConfigError(
            f"--out {run_dir} already holds a run: add --resume to continue it or --force to start over in it"
        )
    return config, run_dir


def cli_train(args: argparse.Namespace) -> int:
    config, run_dir = _config_and_run_dir(args)
    print(f"run directory: {run_dir}  (tensorboard --logdir {run_dir / 'tb'})", file=sys.stderr)
    ckpt = run_training(config, run_dir, resume=args.resume)
    print(json.dumps({"checkpoint": str(ckpt), "run_dir": str(run_dir)}))
    return 0
