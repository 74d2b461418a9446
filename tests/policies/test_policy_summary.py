import argparse
import json

import pytest

from hrm_spawn.envs.config import ConfigError
from hrm_spawn.policies.summary import cli_summary


def run(capsys, config, overrides=()):
    assert cli_summary(argparse.Namespace(config=config, overrides=list(overrides))) == 0
    return json.loads(capsys.readouterr().out)


def test_summary_of_hrm_27m(capsys):
    out = run(capsys, "policy/hrm-27m")
    assert out["core_params"] == 27_262_976
    assert out["total_params"] == out["core_params"] + out["head_params"] + out["embedding_params"]
    # q, policy (9 x 513 each) and value (513) heads for K = 4 agents
    assert out["num_actions"] == 9 and out["head_params"] == 2 * 9 * 513 + 513
    assert out["attention_backend"] in {"sdpa", "flash_attn_2", "flash_attn_3"}


def test_summary_applies_overrides_and_rejects_bad_keys(capsys):
    out = run(capsys, "policy/hrm-tiny", ["hidden_size=32", "num_features=10"])
    assert out["num_features"] == 10 and out["core_params"] == 2 * (32 * 96 + 32 * 32 + 32 * 512 + 256 * 32)
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        cli_summary(argparse.Namespace(config="policy/hrm-tiny", overrides=["nope=1"]))
