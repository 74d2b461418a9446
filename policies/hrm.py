"""HRM ACT v1 reasoning core: a slow planning module H and a fast execution module L.

One segment runs H_cycles x L_cycles updates; each L update sees z_H plus the input, each H update sees
z_L. Only the last L and the last H update are differentiated (the one-step gradient approximation of
the HRM paper), so memory does not grow with the number of cycles. Prefix positions in front of the
tokens carry the env's feature vector (where the reference puts its puzzle embedding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hrm_spawn.policies.config import HRMConfig
from hrm_spawn.policies.layers import Block, Embedding, Linear, RotaryEmbedding, trunc_normal_

CosSin = tuple[torch.Tensor, torch.Tensor] | None


@dataclass
class HRMCarry:
    """Recurrent state kept across segments (and env steps): [B, num_prefix + seq_len, hidden] each."""

    z_H: torch.Tensor
    z_L: torch.Tensor

    def detach(self) -> HRMCarry:
        return HRMCarry(self.z_H.detach(), self.z_L.detach())


def resolve_dtype(forward_dtype: str, device: torch.device | str) -> torch.dtype:
    """``auto`` = bf16 on CUDA (flash-attn needs it), fp32 elsewhere (CPU bf16 matmuls are slow)."""
    if forward_dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return getattr(torch, forward_dtype)


class ReasoningModule(nn.Module):
    """A stack of blocks; the other level's state enters by addition (input injection)."""

    def __init__(self, config: HRMConfig, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            Block(config.hidden_size, config.num_heads, config.expansion, config.rms_norm_eps)
            for _ in range(num_layers)
        )

    def forward(self, z: torch.Tensor, injection: torch.Tensor, cos_sin: CosSin) -> torch.Tensor:
        z = z + injection
        for layer in self.layers:
            z = layer(z, cos_sin)
        return z


class HRMCore(nn.Module):
    def __init__(self, config: HRMConfig, num_features: int = 0) -> None:
        super().__init__()
        if num_features > 0 and config.num_prefix == 0:
            raise ValueError(f"HRMCore: {num_features} features need num_prefix >= 1 (got 0)")
        self.config = config
        self.num_features = num_features
        hidden, prefix_dim = config.hidden_size, config.num_prefix * config.hidden_size
        self.embed_scale = math.sqrt(hidden)
        self.embed_tokens = Embedding(config.vocab_size, hidden, init_std=1.0 / self.embed_scale)
        if num_features > 0:
            self.feature_proj = Linear(num_features, prefix_dim)
            # Same scale as a token embedding before the sqrt(hidden) factor, so features do not swamp tokens.
            trunc_normal_(self.feature_proj.weight, std=1.0 / (math.sqrt(num_features) * self.embed_scale))
        if config.repo_embedding > 0:
            # Zero init, like the reference's puzzle embedding: an unseen repository adds nothing.
            self.repo_emb = Embedding(config.repo_embedding, prefix_dim, init_std=0.0)
        if config.pos_encodings == "rope":
            self.rotary = RotaryEmbedding(config.head_dim, config.total_len, config.rope_theta)
        else:
            self.embed_pos = Embedding(config.total_len, hidden, init_std=1.0 / self.embed_scale)
        self.H_level = ReasoningModule(config, config.H_layers)
        self.L_level = ReasoningModule(config, config.L_layers)
        self.register_buffer("H_init", trunc_normal_(torch.empty(hidden), std=1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(hidden), std=1.0))

    # -- carry -----------------------------------------------------------------------------------
    def initial_carry(
        self, batch: int, device: torch.device | str, dtype: torch.dtype | None = None
    ) -> HRMCarry:
        dtype = dtype or resolve_dtype(self.config.forward_dtype, device)
        shape = (batch, self.config.total_len, self.config.hidden_size)
        return HRMCarry(
            self.H_init.to(device=device, dtype=dtype).expand(shape).clone(),
            self.L_init.to(device=device, dtype=dtype).expand(shape).clone(),
        )

    def reset_carry(self, carry: HRMCarry, reset: torch.Tensor) -> HRMCarry:
        """Rows where ``reset`` is true go back to the fixed initial states (a new episode)."""
        mask = reset.to(device=carry.z_H.device, dtype=torch.bool).view(-1, 1, 1)
        return HRMCarry(
            torch.where(mask, self.H_init.to(carry.z_H.dtype), carry.z_H),
            torch.where(mask, self.L_init.to(carry.z_L.dtype), carry.z_L),
        )

    # -- input -----------------------------------------------------------------------------------
    def embed(
        self,
        tokens: torch.Tensor,
        features: torch.Tensor | None,
        repo_ids: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        cfg = self.config
        if tokens.dim() != 2 or tokens.shape[1] != cfg.seq_len:
            raise ValueError(f"HRMCore: tokens must be [batch, {cfg.seq_len}], got {list(tokens.shape)}")
        x = self.embed_tokens(tokens.long(), dtype)
        if cfg.num_prefix > 0:
            x = torch.cat((self._prefix(tokens.shape[0], features, repo_ids, dtype), x), dim=1)
        if cfg.pos_encodings == "learned":
            # 1/sqrt(2) keeps the variance of the sum at that of one embedding (as the reference does).
            x = 0.707106781 * (x + self.embed_pos.weight.to(dtype))
        return self.embed_scale * x

    def _prefix(
        self, batch: int, features: torch.Tensor | None, repo_ids: torch.Tensor | None, dtype: torch.dtype
    ) -> torch.Tensor:
        cfg = self.config
        prefix = torch.zeros(batch, cfg.num_prefix * cfg.hidden_size, dtype=dtype, device=self.H_init.device)
        if self.num_features > 0:
            if features is None or features.shape != (batch, self.num_features):
                got = None if features is None else list(features.shape)
                raise ValueError(f"HRMCore: features must be [batch, {self.num_features}], got {got}")
            prefix = prefix + self.feature_proj(features.to(dtype))
        if repo_ids is not None and cfg.repo_embedding > 0:
            prefix = prefix + self.repo_emb(repo_ids.long(), dtype)
        return prefix.view(batch, cfg.num_prefix, cfg.hidden_size)

    # -- reasoning -------------------------------------------------------------------------------
    def forward(
        self,
        carry: HRMCarry,
        tokens: torch.Tensor,
        features: torch.Tensor | None = None,
        repo_ids: torch.Tensor | None = None,
    ) -> tuple[HRMCarry, torch.Tensor]:
        """One ACT segment. Returns the detached new carry and z_H (with the one-step gradient)."""
        dtype = carry.z_H.dtype
        x = self.embed(tokens, features, repo_ids, dtype)
        cos_sin = self.rotary() if self.config.pos_encodings == "rope" else None
        z_H, z_L = self._cycles_without_grad(carry, x, cos_sin)
        z_L = self.L_level(z_L, z_H + x, cos_sin)
        z_H = self.H_level(z_H, z_L, cos_sin)
        return HRMCarry(z_H.detach(), z_L.detach()), z_H

    def _cycles_without_grad(
        self, carry: HRMCarry, x: torch.Tensor, cos_sin: CosSin
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every update but the final L and H one: no graph is kept (one-step gradient)."""
        cfg = self.config
        z_H, z_L = carry.z_H, carry.z_L
        with torch.no_grad():
            for h in range(cfg.H_cycles):
                last_h = h == cfg.H_cycles - 1
                for step in range(cfg.L_cycles):
                    if not (last_h and step == cfg.L_cycles - 1):
                        z_L = self.L_level(z_L, z_H + x, cos_sin)
                if not last_h:
                    z_H = self.H_level(z_H, z_L, cos_sin)
        return z_H, z_L
