"""HRM policy throughput: forward+backward samples/s and tokens/s.

Writes hrm_tiny_cpu_samples_per_s.json into the bench output folder (_results.results_dir()) (hrm-tiny, fp32, CPU). The GPU figures
(hrm-27m in bf16, against the reference implementation) come from benchmarks/hrm_gpu.py. Run:

    .venv/bin/python benchmarks/hrm_throughput.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _results import write_result  # noqa: E402

from hrm_spawn.envs.config import load_config  # noqa: E402
from hrm_spawn.envs.episode import ActionLayout  # noqa: E402
from hrm_spawn.envs.features import num_features  # noqa: E402
from hrm_spawn.policies.config import HRMConfig  # noqa: E402
from hrm_spawn.policies.hrm import resolve_dtype  # noqa: E402
from hrm_spawn.policies.layers import attention_backend  # noqa: E402
from hrm_spawn.policies.spawn_policy import SpawnPolicy  # noqa: E402

NUM_ACTIONS, NUM_FEATURES = ActionLayout(4).n, num_features(4)  # K = 4 agents, the env's feature layout

# hrm-tiny CPU goal: a PPO update on 2 shared cores with n_steps=256 x 4 epochs is 1024 forward+backward
# samples; at 200 samples/s that is ~5 s, keeping training time dominated by the sandbox, not the policy.
CPU_GOAL = 200.0


def measure(config: HRMConfig, batch: int, device: str, seconds: float) -> dict[str, float]:
    torch.manual_seed(0)
    policy = SpawnPolicy(config, NUM_ACTIONS, NUM_FEATURES).to(device)
    tokens = torch.randint(0, config.vocab_size, (batch, config.seq_len), device=device)
    features = torch.randn(batch, NUM_FEATURES, device=device)
    mask = torch.ones(batch, NUM_ACTIONS, dtype=torch.bool, device=device)
    carry = policy.initial_carry(batch, device)

    def one() -> None:
        _, out = policy(carry, tokens, features, mask)
        # Touch every head so the backward covers the whole policy.
        (
            out.q_logits.square().mean() + out.value.square().mean() + out.action_logits.logsumexp(-1).mean()
        ).backward()

    for _ in range(3):  # warm-up
        one()
    iters, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or iters < 3:
        one()
        iters += 1
    elapsed = time.perf_counter() - start
    samples = iters * batch / elapsed
    return {
        "samples_per_s": samples,
        "tokens_per_s": samples * config.total_len,
        "iters": iters,
        "seconds": elapsed,
    }


def write(
    name: str,
    value: float,
    goal: float,
    config_name: str,
    config: HRMConfig,
    batch: int,
    device: str,
    extra: dict,
) -> Path:
    dtype = resolve_dtype(config.forward_dtype, device)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    meta = {
        "machine": machine,
        "config": config_name,
        "batch": batch,
        "seq_len": config.seq_len,
        "positions": config.total_len,
        "dtype": str(dtype).removeprefix("torch."),
        "attention_backend": attention_backend(device, dtype),
        "torch": torch.__version__,
        "measure": "forward+backward of SpawnPolicy (one ACT segment), optimizer step excluded",
        **extra,
    }
    return write_result(name, value, "samples/s", goal, True, meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per measurement")
    parser.add_argument("--cpu-batch", type=int, default=32)
    args = parser.parse_args(argv)

    tiny = load_config(HRMConfig, "policy/hrm-tiny")
    res = measure(tiny, args.cpu_batch, "cpu", args.seconds)
    write(
        "hrm_tiny_cpu_samples_per_s",
        res["samples_per_s"],
        CPU_GOAL,
        "policy/hrm-tiny",
        tiny,
        args.cpu_batch,
        "cpu",
        {
            "tokens_per_s": round(res["tokens_per_s"], 1),
            "iters": res["iters"],
            "goal_reason": "a 1024-sample PPO update (n_steps 256 x 4 epochs) in ~5 s on 2 cores",
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
