"""hrm-spawn env check TARGET: does an environment meet the contract the trainers rely on?

TARGET is a registered id (``HRMSpawn/SWESmith-v0``), an entry-point name, ``module:Class`` or
``path/to/file.py:Class``. Checks, each printed PASS/FAIL: construction, gymnasium's checker,
stable-baselines3's checker, the spawn contract (Dict tokens/features/action_mask, Discrete(1 + 2K),
``action_masks()``), and a short random rollout with masks (masked actions must raise).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from hrm_spawn.envs.registry import make


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


def _factory(target: str, config: str | None, overrides: list[str]) -> Callable[[], gym.Env]:
    kwargs: dict[str, Any] = {}
    if config:
        kwargs["config"] = config
    if overrides:
        kwargs["overrides"] = overrides
    return lambda: make(target, **kwargs)


def _check_gymnasium(env: gym.Env) -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(env, skip_render_check=True)


def _check_sb3(env: gym.Env) -> None:
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a warning from SB3's checker is a failure here
        check_env(env, warn=True, skip_render_check=True)


def _check_contract(env: gym.Env) -> None:
    space = env.observation_space
    if not isinstance(space, gym.spaces.Dict) or set(space.spaces) != {"tokens", "features", "action_mask"}:
        raise AssertionError(f"observation space must be Dict(tokens, features, action_mask), got {space}")
    act = env.action_space
    if not isinstance(act, gym.spaces.Discrete) or act.n < 3 or act.n % 2 != 1:
        raise AssertionError(f"action space must be Discrete(1 + 2K) with K >= 1, got {act}")
    if space["action_mask"].shape != (act.n,):
        raise AssertionError(f"action_mask shape {space['action_mask'].shape} != ({act.n},)")
    if space["tokens"].dtype != np.int64 or space["features"].dtype != np.float32:
        raise AssertionError("tokens must be int64 and features float32")
    if not callable(getattr(env.unwrapped, "action_masks", None)):
        raise AssertionError("the env has no action_masks() method (sb3-contrib MaskablePPO needs it)")


def _check_rollout(env: gym.Env, steps: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    episodes, masked_tried, total = 0, 0, 0
    for _ in range(steps):
        mask = np.asarray(env.unwrapped.action_masks(), dtype=bool)
        if not np.array_equal(mask, obs["action_mask"].astype(bool)):
            raise AssertionError(
                f"action_masks() {mask.astype(int)} != obs['action_mask'] {obs['action_mask']}"
            )
        if "action_mask" in info and not np.array_equal(mask, np.asarray(info["action_mask"], dtype=bool)):
            raise AssertionError("info['action_mask'] disagrees with action_masks()")
        if not mask.any():
            raise AssertionError("every action is masked")
        if not mask.all() and masked_tried < 3:
            bad = int(rng.choice(np.flatnonzero(~mask)))
            try:
                env.step(bad)
            except Exception:  # the contract: a masked action is refused with an error
                masked_tried += 1
            else:
                raise AssertionError(f"stepping masked action {bad} did not raise")
        obs, reward, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(mask))))
        if not np.isfinite(reward):
            raise AssertionError(f"reward {reward} is not finite")
        total += 1
        if terminated or truncated:
            episodes += 1
            obs, info = env.reset()
    return f"{total} steps, {episodes} episodes, {masked_tried} masked actions refused"


def run_checks(factory: Callable[[], gym.Env], steps: int = 200, seed: int = 0) -> list[CheckResult]:
    results: list[CheckResult] = []
    try:
        env = factory()
    except Exception as exc:
        return [CheckResult("construct", False, f"{type(exc).__name__}: {exc}")]
    results.append(CheckResult("construct", True, type(env.unwrapped).__name__))
    env.close()
    checks: list[tuple[str, Callable[[gym.Env], Any]]] = [
        ("gymnasium check_env", _check_gymnasium),
        ("stable-baselines3 check_env", _check_sb3),
        ("spawn contract", _check_contract),
        ("random rollout with masks", lambda e: _check_rollout(e, steps, seed)),
    ]
    for name, check in checks:
        env = factory()
        try:
            detail = check(env)
            results.append(CheckResult(name, True, detail or ""))
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            results.append(
                CheckResult(name, False, f"{type(exc).__name__}: {exc} ({tb.filename}:{tb.lineno})")
            )
        finally:
            env.close()
    return results


def cli_env_check(args: argparse.Namespace) -> int:
    """``hrm-spawn env check TARGET [--config FILE] [--steps N] [key=value ...]``; exit 1 on any failure."""
    overrides = list(getattr(args, "overrides", None) or [])
    factory = _factory(args.target, getattr(args, "config", None), overrides)
    results = run_checks(factory, steps=int(getattr(args, "steps", 200) or 200))
    for r in results:
        print(f"{'PASS' if r.ok else 'FAIL'}  {r.name}" + (f": {r.detail}" if r.detail else ""))
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed for {args.target}")
    return 1 if failed else 0


cli_check = cli_env_check  # the name trainers/cli.py wires


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="registered env id, entry-point name, module:Class or file.py:Class")
    parser.add_argument("--config", help="env config file or preset (passed to the constructor as config=)")
    parser.add_argument("--steps", type=int, default=200, help="steps of the random rollout")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hrm-spawn env check", description=inspect.cleandoc(__doc__ or ""))
    add_arguments(parser)
    return cli_env_check(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
