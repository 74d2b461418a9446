"""Parity with the reference HRM (sapientinc/HRM, models/hrm/hrm_act_v1.py).

The fixture holds the reference model's state dict, fixed inputs and its outputs, produced on CPU
(flash-attn replaced by SDPA) by a throwaway script; see fixtures/reference_tiny.json for the config
and for how the gradients were made (a fixed loss over both segments; only the numbers are stored).
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from hrm_spawn.policies.config import HRMConfig
from hrm_spawn.policies.io import PolicyLoadError, load_reference_state_dict, reference_name
from hrm_spawn.policies.spawn_policy import SpawnPolicy

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def reference():
    meta = json.loads((FIXTURES / "reference_tiny.json").read_text())["config"]
    tensors = load_file(str(FIXTURES / "reference_tiny.safetensors"))
    return meta, tensors


def our_config(ref: dict, **overrides) -> HRMConfig:
    fields = dict(
        hidden_size=ref["hidden_size"],
        num_heads=ref["num_heads"],
        H_layers=ref["H_layers"],
        L_layers=ref["L_layers"],
        H_cycles=ref["H_cycles"],
        L_cycles=ref["L_cycles"],
        expansion=ref["expansion"],
        pos_encodings=ref["pos_encodings"],
        rope_theta=ref["rope_theta"],
        seq_len=ref["seq_len"],
        vocab_size=ref["vocab_size"],
        num_prefix=1,
        repo_embedding=ref["num_puzzle_identifiers"],
        forward_dtype="float32",
    )
    return HRMConfig(**{**fields, **overrides})


def ref_state(tensors):
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


# fp32 on CPU: the fixture was made on another CPU, and BLAS kernels differ in summation order between
# CPU models (seen: 2e-5 on an AMD EPYC after the second segment). A wrong weight mapping or a missing
# norm moves outputs by > 1e-2, so 1e-4 still catches every real mismatch.
ATOL = 1e-4


def test_outputs_match_the_reference(reference):
    ref, t = reference
    policy = SpawnPolicy(our_config(ref), num_actions=3, num_features=0)
    report = load_reference_state_dict(policy, ref_state(t))
    assert report.ignored == ["model.inner.lm_head.weight"] and report.untouched == []
    tokens, ids = t["input.tokens"], t["input.puzzle_identifiers"]
    carry, out1 = policy(policy.initial_carry(3), tokens, None, None, None, repo_ids=ids)
    torch.testing.assert_close(carry.z_H, t["output.z_H1"], atol=ATOL, rtol=0)
    torch.testing.assert_close(carry.z_L, t["output.z_L1"], atol=ATOL, rtol=0)
    carry, out2 = policy(carry, tokens, None, None, None, repo_ids=ids)
    torch.testing.assert_close(carry.z_H, t["output.z_H2"], atol=ATOL, rtol=0)
    torch.testing.assert_close(carry.z_L, t["output.z_L2"], atol=ATOL, rtol=0)
    for out, key in ((out1, "output.q1"), (out2, "output.q2")):
        q = t[key]  # reference (halt, continue); every non-halt row of ours is "continue"
        torch.testing.assert_close(out.q_logits[:, 0], q[:, 0], atol=ATOL, rtol=0)
        torch.testing.assert_close(out.q_logits[:, 1:], q[:, 1:].expand(-1, 2), atol=ATOL, rtol=0)


def test_every_ensemble_member_starts_as_the_reference_q_head(reference):
    ref, t = reference
    policy = SpawnPolicy(our_config(ref, q_ensemble=2), num_actions=3, num_features=0)
    load_reference_state_dict(policy, ref_state(t))
    carry, out = policy(policy.initial_carry(3), t["input.tokens"], repo_ids=t["input.puzzle_identifiers"])
    for member in range(2):
        q = out.q_members[:, member]
        torch.testing.assert_close(q[:, 0], t["output.q1"][:, 0], atol=ATOL, rtol=0)
        torch.testing.assert_close(q[:, 1:], t["output.q1"][:, 1:].expand(-1, 2), atol=ATOL, rtol=0)


def test_reference_loader_errors_are_clear(reference):
    ref, t = reference
    with pytest.raises(PolicyLoadError, match="config.repo_embedding is 0"):
        load_reference_state_dict(SpawnPolicy(our_config(ref, repo_embedding=0), 3, 0), ref_state(t))
    state = ref_state(t)
    del state["model.inner.L_level.layers.1.mlp.down_proj.weight"]
    with pytest.raises(
        PolicyLoadError, match="missing in the reference state dict: L_level.layers.1.mlp.down.weight"
    ):
        load_reference_state_dict(SpawnPolicy(our_config(ref), 3, 0), state)
    with pytest.raises(
        PolicyLoadError,
        match=r"shape mismatch: embed_tokens.weight is \[260, 32\] in the reference, \[300, 32\] here",
    ):
        load_reference_state_dict(SpawnPolicy(our_config(ref, vocab_size=300), 3, 0), ref_state(t))


def test_gradients_match_the_reference(reference):
    """The fixture's loss, summed over two segments: per segment, a fixed random readout of the token
    logits (lm_head of z_H without the prefix) plus q_halt - 0.5 q_continue. The one-step gradient
    reaches every weight of the core, the embeddings and the Q-head; each must equal the reference's."""
    ref, t = reference
    policy = SpawnPolicy(our_config(ref), num_actions=3, num_features=0)
    load_reference_state_dict(policy, ref_state(t))
    tokens, ids = t["input.tokens"], t["input.puzzle_identifiers"]
    carry = policy.initial_carry(3)
    for seg in range(2):
        carry, z_H = policy.core(carry, tokens, repo_ids=ids)
        logits = F.linear(z_H, t["model.inner.lm_head.weight"])[:, 1:]
        q = policy.q_head(z_H[:, 0])  # rows (halt, spawn 1, delegate 1); the reference's continue = row 1
        loss = (logits * t["grad.readout"][seg]).mean() + q[:, 0].sum() - 0.5 * q[:, 1].sum()
        loss.backward()
    ours = dict(policy.named_parameters())
    compared = []
    for key, grad in t.items():
        if not key.startswith("grad.model.") or key.endswith("lm_head.weight"):
            continue
        name = reference_name(key.removeprefix("grad."))
        if name.startswith("q_head."):
            mine = ours[name].grad[:2]  # halt and the one "continue" row the loss read
        else:
            name = "core." + name
            mine = ours[name].grad
        torch.testing.assert_close(mine, grad, atol=ATOL, rtol=1e-3, msg=lambda m, n=name: f"{n}: {m}")
        compared.append(name)
    heads_not_in_the_reference = {
        "policy_head.weight",
        "policy_head.bias",
        "value_head.weight",
        "value_head.bias",
    }
    assert set(ours) - set(compared) == heads_not_in_the_reference | {"core.repo_emb.weight"}
    # The reference's sparse puzzle embedding returns per-row gradients; ids are distinct here.
    assert len(set(ids.tolist())) == len(ids)
    torch.testing.assert_close(
        ours["core.repo_emb.weight"].grad[ids], t["grad.puzzle_emb_rows"], atol=ATOL, rtol=0
    )


def test_a_loaded_reference_checkpoint_halts_where_the_reference_would(reference):
    """The reference's Q-head also fills the think-head: (stop, go on) for the segments of one step."""
    ref, t = reference
    policy = SpawnPolicy(our_config(ref, halt_max_steps=4, halt_exploration_prob=0.0), 3, 0)
    report = load_reference_state_dict(policy, ref_state(t))
    assert {"think_head.weight", "think_head.bias"} <= set(report.loaded)
    tokens, ids = t["input.tokens"], t["input.puzzle_identifiers"]
    _, out = policy.train()(policy.initial_carry(3), tokens, repo_ids=ids)
    q1, q2 = t["output.q1"], t["output.q2"]  # the reference halts after a segment where q_halt > q_continue
    halts_at_once = q1[:, 0] > q1[:, 1]
    assert halts_at_once.tolist() == [True, True, False]  # the fixture has both kinds of row
    assert out.segments[:2].tolist() == [1, 1] and int(out.segments[2]) > 2  # row 2 goes on after q2 too
    assert bool((q2[2, 0] < q2[2, 1]).item())
    torch.testing.assert_close(out.think_q[:2], q1[:2], atol=ATOL, rtol=0)
