import pytest
import torch
from safetensors.torch import load_file, save_file

from hrm_spawn.policies.config import HRMConfig
from hrm_spawn.policies.io import PolicyLoadError, load_policy, save_policy
from hrm_spawn.policies.spawn_policy import SpawnPolicy


def small(**overrides) -> HRMConfig:
    base = dict(
        hidden_size=32,
        num_heads=2,
        H_layers=1,
        L_layers=1,
        seq_len=10,
        forward_dtype="float32",
        repo_embedding=3,
    )
    return HRMConfig(**{**base, **overrides})


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    policy = SpawnPolicy(small(), 5, 4)
    with torch.no_grad():
        policy.q_head.weight.normal_()
    save_policy(tmp_path / "p", policy)
    loaded = load_policy(tmp_path / "p")
    assert loaded.config == policy.config and loaded.num_actions == 5 and loaded.num_features == 4
    tokens, feats = torch.randint(0, 260, (2, 10)), torch.randn(2, 4)
    _, a = policy(policy.initial_carry(2), tokens, feats)
    _, b = loaded(loaded.initial_carry(2), tokens, feats)
    torch.testing.assert_close(a.q_logits, b.q_logits, rtol=0, atol=0)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(PolicyLoadError, match="missing model.safetensors"):
        load_policy(tmp_path)


def test_missing_unexpected_and_mismatched_names_are_listed(tmp_path):
    save_policy(tmp_path, SpawnPolicy(small(), 5, 4))
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["core.H_init"]
    state["core.extra.weight"] = torch.zeros(2)
    state["q_head.weight"] = torch.zeros(3, 32)
    save_file(
        state,
        str(tmp_path / "model.safetensors"),
        metadata={"format": "hrm-spawn-policy/1", "num_actions": "5", "num_features": "4"},
    )
    with pytest.raises(PolicyLoadError) as err:
        load_policy(tmp_path)
    msg = str(err.value)
    assert "missing: core.H_init" in msg and "unexpected: core.extra.weight" in msg
    assert "shape mismatch: q_head.weight is [3, 32] in the file, [5, 32] in the model" in msg


def test_config_that_does_not_fit_the_weights(tmp_path):
    save_policy(tmp_path, SpawnPolicy(small(), 5, 4))
    (tmp_path / "config.yaml").write_text(
        (tmp_path / "config.yaml").read_text().replace("hidden_size: 32", "hidden_size: 64")
    )
    with pytest.raises(PolicyLoadError, match="shape mismatch: core.embed_tokens.weight"):
        load_policy(tmp_path)
