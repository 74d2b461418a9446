"""Transformer pieces of HRM: bias-free linears, RMSNorm (no scale), SwiGLU, RoPE, attention.

Parameters stay fp32; each op casts its weight to the activation dtype, so the forward dtype (bf16 on a
GPU, fp32 on a CPU) is chosen by the input, as in the reference implementation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def trunc_normal_(
    tensor: torch.Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0
) -> torch.Tensor:
    """Truncated normal whose *actual* std is ``std`` (JAX's definition; torch's trunc_normal_ is not)."""
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        sqrt2 = math.sqrt(2.0)
        a, b = math.erf(lower / sqrt2), math.erf(upper / sqrt2)
        z = (b - a) / 2
        c = (2 * math.pi) ** -0.5
        pdf_lo, pdf_hi = c * math.exp(-0.5 * lower**2), c * math.exp(-0.5 * upper**2)
        var_ratio = 1 - (upper * pdf_lo - lower * pdf_hi) / z - ((pdf_lo - pdf_hi) / z) ** 2
        scale = std / math.sqrt(var_ratio)
        tensor.uniform_(a, b).erfinv_().mul_(sqrt2 * scale).clip_(lower * scale, upper * scale)
    return tensor


class Linear(nn.Module):
    """Linear layer with truncated-normal LeCun init (std 1/sqrt(fan_in)); bias optional, zero-initialised."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(
            trunc_normal_(torch.empty(out_features, in_features), std=in_features**-0.5)
        )
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, bias={self.bias is not None}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


class Embedding(nn.Module):
    def __init__(self, num: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(num, dim), std=init_std))

    def forward(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return F.embedding(ids, self.weight.to(dtype))


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm without a learned scale, computed in fp32 for stability under bf16."""
    dtype = x.dtype
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.square().mean(-1, keepdim=True) + eps)).to(dtype)


def swiglu_inter(hidden_size: int, expansion: float) -> int:
    """The reference's inner width: 2/3 of expansion*hidden, rounded up to a multiple of 256."""
    raw = round(expansion * hidden_size * 2 / 3)
    return -(raw // -256) * 256


class SwiGLU(nn.Module):
    def __init__(self, hidden_size: int, expansion: float) -> None:
        super().__init__()
        inter = swiglu_inter(hidden_size, expansion)
        self.gate_up = Linear(hidden_size, 2 * inter)
        self.down = Linear(inter, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for RoPE in the rotate-half layout (first half of the head dim pairs with the second)."""

    def __init__(self, head_dim: int, max_positions: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos, self.sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, S, H, D]; cos/sin: [S, D] (fp32, so bf16 activations keep their angle precision).

    Same result as the rotate-half form x*cos + rotate_half(x)*sin, written on the two halves so that
    no negated copy of x is made (elementwise ops dominate on a CPU).
    """
    dtype, half = x.dtype, x.shape[-1] // 2
    x = x.to(cos.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, :half].unsqueeze(-2), sin[:, :half].unsqueeze(-2)
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).to(dtype)


def _load_flash() -> tuple[str, Callable | None]:
    try:
        from flash_attn_interface import flash_attn_func  # type: ignore[import-not-found]

        return "flash_attn_3", flash_attn_func
    except ImportError:
        pass
    try:
        from flash_attn import flash_attn_func  # type: ignore[import-not-found]

        return "flash_attn_2", flash_attn_func
    except ImportError:
        return "sdpa", None


FLASH_NAME, _FLASH_FUNC = _load_flash()


def attention_backend(device: torch.device | str, dtype: torch.dtype) -> str:
    """Which kernel attention uses for tensors on ``device`` in ``dtype``: flash needs CUDA and fp16/bf16."""
    if (
        _FLASH_FUNC is not None
        and torch.device(device).type == "cuda"
        and dtype in (torch.float16, torch.bfloat16)
    ):
        return FLASH_NAME
    return "sdpa"


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """Non-causal attention; q, k, v and the result are [B, S, H, D]."""
    backend = backend or attention_backend(q.device, q.dtype)
    if backend != "sdpa":
        if _FLASH_FUNC is None:
            raise RuntimeError(f"attention backend {backend!r} requested but flash-attn is not installed")
        out = _FLASH_FUNC(q, k, v, causal=False)
        return out[0] if isinstance(out, tuple) else out  # FA3 may return (out, lse)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=False
    )
    return out.transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused QKV projection (fewer, larger matmuls)."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = Linear(hidden_size, 3 * hidden_size)
        self.out = Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        b, s, _ = x.shape
        qkv = self.qkv(x).view(b, s, 3 * self.num_heads, self.head_dim)
        if cos_sin is not None:  # q and k rotated in one pass over the fused projection
            qk = apply_rope(qkv[:, :, : 2 * self.num_heads], *cos_sin)
            q, k = qk.split(self.num_heads, dim=2)
            v = qkv[:, :, 2 * self.num_heads :]
        else:
            q, k, v = qkv.split(self.num_heads, dim=2)
        return self.out(attend(q, k, v).reshape(b, s, -1))


class Block(nn.Module):
    """Post-norm transformer block: x = norm(x + attn(x)); x = norm(x + mlp(x))."""

    def __init__(self, hidden_size: int, num_heads: int, expansion: float, eps: float) -> None:
        super().__init__()
        self.attn = Attention(hidden_size, num_heads)
        self.mlp = SwiGLU(hidden_size, expansion)
        self.eps = eps

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = rms_norm(x + self.attn(x, cos_sin), self.eps)
        return rms_norm(x + self.mlp(x), self.eps)
