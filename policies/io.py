"""Save/load a SpawnPolicy (safetensors + config.yaml), and load checkpoints of the reference HRM code."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from hrm_spawn.envs.config import ConfigError, dump_config, load_config
from hrm_spawn.policies.config import HRMConfig
from hrm_spawn.policies.hrm import HRMCore
from hrm_spawn.policies.spawn_policy import HALT, SpawnPolicy

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
FORMAT = "hrm-spawn-policy/1"


class PolicyLoadError(ValueError):
    """Weights that do not fit the model; the message names the file and the offending tensors."""


def save_policy(directory: str | Path, policy: SpawnPolicy, config: HRMConfig | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = config or policy.config
    tensors = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    meta = {
        "format": FORMAT,
        "num_actions": str(policy.num_actions),
        "num_features": str(policy.num_features),
    }
    save_file(tensors, str(directory / WEIGHTS), metadata=meta)
    (directory / CONFIG).write_text(dump_config(config), encoding="utf-8")
    return directory


def load_policy(directory: str | Path, device: torch.device | str = "cpu") -> SpawnPolicy:
    directory = Path(directory)
    weights, config_path = directory / WEIGHTS, directory / CONFIG
    for path in (weights, config_path):
        if not path.is_file():
            raise PolicyLoadError(f"{directory}: missing {path.name} (expected {WEIGHTS} and {CONFIG})")
    try:
        config = load_config(HRMConfig, config_path)
    except ConfigError as exc:
        raise PolicyLoadError(f"{config_path}: {exc}") from None
    try:
        meta = _read_metadata(weights)
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise PolicyLoadError(f"{weights}: not a readable safetensors file: {exc}") from None
    if meta.get("format") != FORMAT:
        raise PolicyLoadError(f"{weights}: format {meta.get('format')!r}, expected {FORMAT!r}")
    policy = SpawnPolicy(config, int(meta["num_actions"]), int(meta["num_features"]))
    load_checked(policy, state, source=str(weights))
    return policy.to(device)


def _read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_checked(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict with one error listing every missing name, unexpected name and shape mismatch."""
    expected = module.state_dict()
    problems = [f"missing: {k} {list(v.shape)}" for k, v in expected.items() if k not in state]
    problems += [f"unexpected: {k} {list(v.shape)}" for k, v in state.items() if k not in expected]
    problems += [
        f"shape mismatch: {k} is {list(v.shape)} in the file, {list(expected[k].shape)} in the model"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if problems:
        raise PolicyLoadError(f"{source}: weights do not fit the model:\n  " + "\n  ".join(problems))
    module.load_state_dict(state)


# -- reference HRM checkpoints -----------------------------------------------------------------------
_WRAPPERS = re.compile(r"^(?:_orig_mod\.|model\.|inner\.)+")
_RENAMES = [
    (re.compile(r"\.self_attn\.qkv_proj\.weight$"), ".attn.qkv.weight"),
    (re.compile(r"\.self_attn\.o_proj\.weight$"), ".attn.out.weight"),
    (re.compile(r"\.mlp\.gate_up_proj\.weight$"), ".mlp.gate_up.weight"),
    (re.compile(r"\.mlp\.down_proj\.weight$"), ".mlp.down.weight"),
    (re.compile(r"^embed_tokens\.embedding_weight$"), "embed_tokens.weight"),
    (re.compile(r"^embed_pos\.embedding_weight$"), "embed_pos.weight"),
]
_IGNORED = ("lm_head.weight",)  # token prediction head: this policy predicts actions, not tokens


@dataclass
class ReferenceLoad:
    loaded: list[str] = field(default_factory=list)  # our names that were set
    ignored: list[str] = field(default_factory=list)  # reference names with no counterpart here
    untouched: list[str] = field(default_factory=list)  # our names the reference does not have


def load_reference_state_dict(
    module: HRMCore | SpawnPolicy, state_dict: dict[str, torch.Tensor]
) -> ReferenceLoad:
    """Initialise the core (and, for a SpawnPolicy, its Q- and think-heads) from a reference HRM ACT v1
    state dict.

    Reference names such as ``model.inner.H_level.layers.0.self_attn.qkv_proj.weight`` map onto ours;
    the puzzle embedding becomes the repo embedding; the reference's (halt, continue) Q-head fills our
    Q-head's halt row and every non-halt row, and the think-head where there is one. Missing core
    tensors and shape mismatches are errors.
    """
    core = module.core if isinstance(module, SpawnPolicy) else module
    ours = core.state_dict()
    report, new_state, q_head = ReferenceLoad(), {}, {}
    for ref_name, tensor in state_dict.items():
        name = reference_name(ref_name)
        if name.startswith("q_head."):
            q_head[name.removeprefix("q_head.")] = tensor
        elif name == "puzzle_emb.weights":
            new_state["repo_emb.weight"] = _puzzle_to_repo(core, tensor, ref_name)
        elif name in ours:
            new_state[name] = tensor
        else:
            report.ignored.append(ref_name)
    _check_prefix(core, "repo_emb.weight" in new_state)
    errors = [
        f"missing in the reference state dict: {k}"
        for k in ours
        if k not in new_state and k not in ("feature_proj.weight", "embed_pos.weight", "repo_emb.weight")
    ]
    errors += [
        f"shape mismatch: {k} is {list(v.shape)} in the reference, {list(ours[k].shape)} here"
        for k, v in new_state.items()
        if k in ours and v.shape != ours[k].shape
    ]
    if "embed_pos.weight" in ours and "embed_pos.weight" not in new_state:
        errors.append("config uses learned positions but the reference state dict has no embed_pos")
    if errors:
        raise PolicyLoadError("reference HRM state dict does not fit:\n  " + "\n  ".join(errors))
    core.load_state_dict({**ours, **{k: v.to(ours[k].dtype) for k, v in new_state.items()}})
    report.loaded = sorted(new_state)
    report.untouched = sorted(k for k in ours if k not in new_state)
    if isinstance(module, SpawnPolicy) and q_head:
        report.loaded += _load_q_heads(module, q_head)
    elif q_head:
        report.ignored += [f"q_head.{k}" for k in q_head]
    return report


def reference_name(ref_name: str) -> str:
    """A reference state-dict name as this package spells it (wrappers stripped, layers renamed)."""
    name = _WRAPPERS.sub("", ref_name)
    for pattern, repl in _RENAMES:
        name = pattern.sub(repl, name)
    return name


def _puzzle_to_repo(core: HRMCore, weights: torch.Tensor, ref_name: str) -> torch.Tensor:
    cfg = core.config
    prefix_dim = cfg.num_prefix * cfg.hidden_size
    if cfg.repo_embedding != weights.shape[0]:
        raise PolicyLoadError(
            f"{ref_name}: {weights.shape[0]} puzzle identifiers, config.repo_embedding is "
            f"{cfg.repo_embedding}; set repo_embedding: {weights.shape[0]}"
        )
    ref_len = -(weights.shape[1] // -cfg.hidden_size)
    if ref_len != cfg.num_prefix:
        raise PolicyLoadError(
            f"{ref_name}: width {weights.shape[1]} makes {ref_len} prefix tokens, "
            f"config.num_prefix is {cfg.num_prefix}"
        )
    # The reference pads a narrow puzzle embedding with zeros up to whole prefix tokens.
    return torch.nn.functional.pad(weights, (0, prefix_dim - weights.shape[1]))


def _check_prefix(core: HRMCore, has_puzzle_emb: bool) -> None:
    if not has_puzzle_emb and core.config.num_prefix > 0:
        raise PolicyLoadError(
            f"reference state dict has no puzzle embedding (no prefix tokens) but "
            f"config.num_prefix is {core.config.num_prefix}; set num_prefix: 0 for parity"
        )


def _load_q_heads(policy: SpawnPolicy, q_head: dict[str, torch.Tensor]) -> list[str]:
    """Every head of ours that is a twin of the reference's (halt, continue) Q-head starts as it.

    The Q-head: halt row <- halt, each non-halt row <- continue (every ensemble member alike). The
    think-head (inner ACT, halt_max_steps > 1) is the reference head itself: (stop, go on) thinking, so
    a loaded reference checkpoint halts its segments where the reference would.
    """
    weight, bias = q_head.get("weight"), q_head.get("bias")
    if weight is None or bias is None or weight.shape != (2, policy.config.hidden_size):
        got = None if weight is None else list(weight.shape)
        raise PolicyLoadError(
            f"reference q_head must be weight [2, {policy.config.hidden_size}] + bias [2], got {got}"
        )
    members, actions = policy.config.q_ensemble, policy.num_actions
    ours_w = policy.q_head.weight.view(members, actions, -1)  # views: writes land in the parameters
    ours_b = policy.q_head.bias.view(members, actions)
    loaded = ["q_head.weight", "q_head.bias"]
    with torch.no_grad():  # every ensemble member starts as the reference's head
        ours_w[:, HALT] = weight[0]
        ours_b[:, HALT] = bias[0]
        ours_w[:, HALT + 1 :] = weight[1]  # "continue" is the value of every non-halt action
        ours_b[:, HALT + 1 :] = bias[1]
        if hasattr(policy, "think_head"):
            policy.think_head.weight.copy_(weight)
            policy.think_head.bias.copy_(bias)
            loaded += ["think_head.weight", "think_head.bias"]
    return loaded
