import pytest
import torch

from hrm_spawn.policies.layers import (
    FLASH_NAME,
    apply_rope,
    attend,
    attention_backend,
    swiglu_inter,
    trunc_normal_,
)


def test_trunc_normal_has_the_requested_std():
    torch.manual_seed(0)
    x = trunc_normal_(torch.empty(200_000), std=0.5)
    assert abs(x.std().item() - 0.5) < 0.01 and x.abs().max().item() <= 2 * 0.5 / 0.87


def test_swiglu_width_matches_the_reference_rule():
    assert swiglu_inter(512, 4) == 1536  # round(1365.3) -> next multiple of 256
    assert swiglu_inter(64, 4) == 256


def test_rope_equals_rotate_half_form():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 8)
    ang = torch.randn(5, 4)
    cos, sin = torch.cat((ang, ang), -1).cos(), torch.cat((ang, ang), -1).sin()
    rotated = torch.cat((-x[..., 4:], x[..., :4]), -1)
    expected = x * cos.unsqueeze(-2) + rotated * sin.unsqueeze(-2)
    torch.testing.assert_close(apply_rope(x, cos, sin), expected)


def test_cpu_uses_sdpa():
    assert attention_backend("cpu", torch.bfloat16) == "sdpa"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (SDPA vs flash-attn parity)")
@pytest.mark.skipif(FLASH_NAME == "sdpa", reason="flash-attn (FA3 or FA2) is not installed")
def test_flash_matches_sdpa_in_bf16():
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 300, 8, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    flash = attend(q, k, v, backend=FLASH_NAME)
    sdpa = attend(q, k, v, backend="sdpa")
    torch.testing.assert_close(flash.float(), sdpa.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bf16 attention kernels)")
def test_bf16_attention_on_cuda_matches_fp32():
    """Whatever kernel serves bf16 here (flash-attn or torch SDPA's flash kernel) stays near fp32."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 300, 8, 64, device="cuda") for _ in range(3))
    exact = attend(q, k, v, backend="sdpa")
    fast = attend(q.bfloat16(), k.bfloat16(), v.bfloat16())
    torch.testing.assert_close(fast.float(), exact, atol=2e-2, rtol=2e-2)
