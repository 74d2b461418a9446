import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO

from hrm_spawn.policies.sb3 import HRMExtractor, HRMMaskablePolicy

SEQ, F, A = 24, 4, 5
POLICY = dict(hidden_size=32, num_heads=2, H_layers=1, L_layers=1, seq_len=SEQ, forward_dtype="float32")
MASK = np.array([1, 1, 0, 1, 0], dtype=bool)


class MaskedToyEnv(gym.Env):
    """Dict observations like SpawnEnv's; action 1 pays, masked actions 2 and 4 must never be taken."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict(
            tokens=gym.spaces.Box(0, 259, (SEQ,), np.int64),
            features=gym.spaces.Box(-np.inf, np.inf, (F,), np.float32),
            action_mask=gym.spaces.MultiBinary(A),
        )
        self.action_space = gym.spaces.Discrete(A)
        self.taken: list[int] = []

    def _obs(self):
        tokens = self.np_random.integers(0, 260, SEQ).astype(np.int64)
        return {
            "tokens": tokens,
            "features": np.full(F, self.t, np.float32),
            "action_mask": MASK.astype(np.int8),
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.taken.append(int(action))
        self.t += 1
        return self._obs(), float(action == 1), self.t >= 4 or action == 0, False, {}

    def action_masks(self):
        return MASK.copy()


def test_extractor_returns_z_H_position_0_from_a_fresh_carry():
    env = MaskedToyEnv()
    torch.manual_seed(0)
    ext = HRMExtractor(env.observation_space, POLICY)
    obs, _ = env.reset(seed=0)
    batch = {k: torch.as_tensor(v).float().unsqueeze(0) for k, v in obs.items()}  # SB3 hands floats over
    feats = ext(batch)
    _, z_H = ext.core(
        ext.core.initial_carry(1, "cpu"),
        torch.as_tensor(obs["tokens"]).unsqueeze(0),
        torch.as_tensor(obs["features"]).unsqueeze(0),
    )
    assert feats.shape == (1, 32) and ext.features_dim == 32
    torch.testing.assert_close(feats, z_H[:, 0])


def test_maskable_ppo_learns_with_both_entry_points():
    env = MaskedToyEnv()
    model = MaskablePPO(
        HRMMaskablePolicy,
        env,
        n_steps=16,
        batch_size=8,
        n_epochs=2,
        seed=0,
        policy_kwargs=dict(policy_config=POLICY),
    )
    before = {k: v.clone() for k, v in model.policy.features_extractor.state_dict().items()}
    model.learn(16)
    after = model.policy.features_extractor.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))
    assert env.taken and not set(env.taken) & {2, 4}

    env2 = MaskedToyEnv()
    model2 = MaskablePPO(
        "MultiInputPolicy",
        env2,
        n_steps=8,
        batch_size=8,
        n_epochs=1,
        seed=0,
        policy_kwargs=dict(
            features_extractor_class=HRMExtractor, features_extractor_kwargs=dict(policy_config=POLICY)
        ),
    )
    model2.learn(8)
    action, _ = model2.predict(env2.reset(seed=1)[0], action_masks=MASK, deterministic=True)
    assert MASK[int(action)]
