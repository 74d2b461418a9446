import pytest
import torch

from hrm_spawn.envs.config import ConfigError, load_config
from hrm_spawn.policies.config import HRMConfig
from hrm_spawn.policies.hrm import HRMCore


def tiny(**overrides) -> HRMConfig:
    base = dict(
        hidden_size=32,
        num_heads=2,
        H_layers=1,
        L_layers=2,
        H_cycles=2,
        L_cycles=3,
        expansion=4,
        seq_len=12,
        num_prefix=1,
        forward_dtype="float32",
    )
    return HRMConfig(**{**base, **overrides})


def inputs(batch: int = 3, seq_len: int = 12, features: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 260, (batch, seq_len), generator=g), torch.randn(batch, features, generator=g)


def reasoning_params(core: HRMCore) -> int:
    return sum(p.numel() for m in (core.H_level, core.L_level) for p in m.parameters())


def test_hrm_27m_core_has_exactly_the_published_parameter_count():
    core = HRMCore(load_config(HRMConfig, "policy/hrm-27m"), num_features=24)
    per_block = 512 * 1536 + 512 * 512 + 512 * 3072 + 1536 * 512
    assert reasoning_params(core) == 8 * per_block == 27_262_976


def test_hrm_tiny_is_well_under_a_million():
    core = HRMCore(load_config(HRMConfig, "policy/hrm-tiny"), num_features=24)
    assert sum(p.numel() for p in core.parameters()) < 300_000


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="not divisible by num_heads"):
        load_config(HRMConfig, "policy/hrm-tiny", ["num_heads=3"])
    with pytest.raises(ConfigError, match="unknown key 'hidden'"):
        load_config(HRMConfig, "policy/hrm-tiny", ["hidden=3"])


def test_gradients_reach_only_the_final_L_and_H_calls():
    cfg = tiny()
    torch.manual_seed(0)
    core = HRMCore(cfg, num_features=5)
    tokens, feats = inputs()
    calls: list[tuple[str, bool]] = []
    hooks = [
        m.register_forward_hook(lambda mod, args, out, n=n: calls.append((n, out.requires_grad)))
        for n, m in (("L", core.L_level), ("H", core.H_level))
    ]
    carry, z_H = core(core.initial_carry(3, "cpu"), tokens, feats)
    for h in hooks:
        h.remove()
    assert [n for n, _ in calls] == (["L"] * cfg.L_cycles + ["H"]) * cfg.H_cycles
    assert [g for _, g in calls] == [False] * (len(calls) - 2) + [True, True]
    assert not carry.z_H.requires_grad and not carry.z_L.requires_grad

    # The gradient equals that of one differentiated L and H step from the no-grad states.
    z_H.square().mean().backward()
    got = {n: p.grad.clone() for n, p in core.named_parameters()}
    core.zero_grad()
    x = core.embed(tokens, feats, None, torch.float32)
    cos_sin = core.rotary()
    zh0, zl0 = core._cycles_without_grad(core.initial_carry(3, "cpu"), x, cos_sin)
    zl = core.L_level(zl0, zh0 + x, cos_sin)
    core.H_level(zh0, zl, cos_sin).square().mean().backward()
    for name, grad in got.items():
        torch.testing.assert_close(grad, core.get_parameter(name).grad, msg=name)


def test_reset_restores_initial_state_per_row():
    torch.manual_seed(0)
    core = HRMCore(tiny(), num_features=5)
    tokens, feats = inputs()
    first, _ = core(core.initial_carry(3, "cpu"), tokens, feats)
    assert not torch.equal(first.z_H[1], core.H_init.expand_as(first.z_H[1]))
    reset = core.reset_carry(first, torch.tensor([True, False, True]))
    torch.testing.assert_close(reset.z_H[0], core.H_init.expand_as(reset.z_H[0]))
    torch.testing.assert_close(reset.z_L[2], core.L_init.expand_as(reset.z_L[2]))
    torch.testing.assert_close(reset.z_H[1], first.z_H[1])


def test_same_seed_same_model_and_outputs():
    tokens, feats = inputs()
    outs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        core = HRMCore(tiny(), num_features=5)
        outs.append(core(core.initial_carry(3, "cpu"), tokens, feats)[1])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert not torch.allclose(outs[0], outs[2])


def test_learned_positions_and_feature_prefix_matter():
    torch.manual_seed(0)
    core = HRMCore(tiny(pos_encodings="learned"), num_features=5)
    assert core.embed_pos.weight.shape == (13, 32) and not hasattr(core, "rotary")
    tokens, feats = inputs()
    _, a = core(core.initial_carry(3, "cpu"), tokens, feats)
    _, b = core(core.initial_carry(3, "cpu"), tokens, feats + 1)
    assert not torch.allclose(a[:, 0], b[:, 0])


def test_wrong_input_shapes_are_named():
    core = HRMCore(tiny(), num_features=5)
    tokens, feats = inputs()
    with pytest.raises(ValueError, match=r"tokens must be \[batch, 12\]"):
        core(core.initial_carry(3, "cpu"), tokens[:, :5], feats)
    with pytest.raises(ValueError, match=r"features must be \[batch, 5\]"):
        core(core.initial_carry(3, "cpu"), tokens, feats[:, :2])
