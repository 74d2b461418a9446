"""HRMConfig: the shape of the HRM core and its ACT settings (presets in configs/policy/)."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from hrm_spawn.core.config import StrictModel


class HRMConfig(StrictModel):
    hidden_size: int = 512
    num_heads: int = 8
    H_layers: int = 4
    L_layers: int = 4
    H_cycles: int = 2
    L_cycles: int = 2
    expansion: float = 4.0
    pos_encodings: Literal["rope", "learned"] = "rope"
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    seq_len: int = 1024
    vocab_size: int = 260
    # Prefix tokens in front of the sequence: they carry the feature vector (and the repo embedding).
    num_prefix: int = 1
    # Inner ACT: segments per env step (1 = one segment, no inner halting).
    halt_max_steps: int = 1
    halt_exploration_prob: float = 0.1
    forward_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # Rows of an optional per-repository embedding added to the prefix (0 = none).
    repo_embedding: int = 0
    # Feature count assumed when no env is attached (policy summary); the env's count wins otherwise.
    num_features: int | None = None
    # Q-head ensemble (bootstrapped DQN): q_ensemble members read the same state, the ACT Q trainer fits
    # each on its own bootstrap resample of the training tasks, and acting reads their mean minus
    # q_pessimism x their spread. Members disagree where few training tasks look like the current one.
    q_ensemble: int = 1
    q_pessimism: float = 0.0

    @model_validator(mode="after")
    def _check_shapes(self) -> HRMConfig:
        positive = (
            "hidden_size",
            "num_heads",
            "H_layers",
            "L_layers",
            "H_cycles",
            "L_cycles",
            "seq_len",
            "vocab_size",
            "halt_max_steps",
            "q_ensemble",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.pos_encodings == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"rope needs an even head dim, got {self.hidden_size // self.num_heads}")
        if self.num_prefix < 0 or self.repo_embedding < 0:
            raise ValueError("num_prefix and repo_embedding must be >= 0")
        if self.q_pessimism < 0:
            raise ValueError(f"q_pessimism must be >= 0, got {self.q_pessimism}")
        if not 0.0 <= self.halt_exploration_prob <= 1.0:
            raise ValueError(f"halt_exploration_prob must be in [0, 1], got {self.halt_exploration_prob}")
        return self

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def total_len(self) -> int:
        """Positions the core attends over: prefix tokens plus the token sequence."""
        return self.num_prefix + self.seq_len
