"""``hrm-spawn policy summary CONFIG [overrides]``: parameter counts and the attention backend here."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from hrm_spawn.envs.config import load_config
from hrm_spawn.policies.config import HRMConfig
from hrm_spawn.policies.hrm import resolve_dtype
from hrm_spawn.policies.layers import attention_backend
from hrm_spawn.policies.spawn_policy import SpawnPolicy

DEFAULT_AGENTS = 4


def _count(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def summarize(
    config: HRMConfig, num_agents: int = DEFAULT_AGENTS, num_features: int | None = None
) -> dict[str, Any]:
    if not num_features:
        from hrm_spawn.envs.features import num_features as env_feature_count  # the env's layout is the truth

        num_features = config.num_features or env_feature_count(num_agents)
    from hrm_spawn.envs.episode import ActionLayout

    num_actions = ActionLayout(num_agents).n
    policy = SpawnPolicy(config, num_actions, num_features)
    core = policy.core
    reasoning = _count(core.H_level) + _count(core.L_level)
    embedding = (
        _count(policy)
        - reasoning
        - _count(policy.q_head)
        - _count(policy.policy_head)
        - _count(policy.value_head)
        - _count(getattr(policy, "think_head", None))
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = resolve_dtype(config.forward_dtype, device)
    return {
        "core_params": reasoning,
        "head_params": _count(policy) - reasoning - embedding,
        "embedding_params": embedding,
        "total_params": _count(policy),
        "num_actions": num_actions,
        "num_features": num_features,
        "device": device,
        "forward_dtype": str(dtype).removeprefix("torch."),
        "attention_backend": attention_backend(device, dtype),
    }


def cli_summary(args: argparse.Namespace) -> int:
    config = load_config(HRMConfig, args.config, list(getattr(args, "overrides", None) or []))
    agents = getattr(args, "agents", None) or DEFAULT_AGENTS
    print(json.dumps(summarize(config, agents, getattr(args, "features", None)), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hrm_spawn.policies.summary", description=__doc__)
    parser.add_argument("config", help="YAML path or preset such as policy/hrm-27m")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. hidden_size=128")
    parser.add_argument("--agents", type=int, default=DEFAULT_AGENTS, help="K agents: 1 + 2K actions")
    parser.add_argument(
        "--features",
        type=int,
        default=None,
        help="env feature count (default: config, else the env's count for K agents)",
    )
    return cli_summary(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
