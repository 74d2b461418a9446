"""Suggestions for mistyped names and config keys."""

from __future__ import annotations

from hrm_spawn.envs.config import StrictModel
from hrm_spawn.envs.suggest import close_matches, config_keys, did_you_mean, unknown_key_hint


class Inner(StrictModel):
    lr: float = 0.1
    lam: float = 0.0


class Outer(StrictModel):
    tasks: str | None = None
    act_q: Inner = Inner()
    maybe: Inner | None = None


def test_did_you_mean() -> None:
    assert did_you_mean("trian", ["tasks", "train", "eval"]) == " (did you mean 'train'?)"
    assert did_you_mean("BROD", ["broad", "cond"]) == " (did you mean 'broad'?)"
    assert did_you_mean("zzz", ["train"]) == ""
    assert close_matches("evl", ["eval", "env"]) == ["eval", "env"]


def test_config_keys_walk_nested_and_optional_sections() -> None:
    assert config_keys(Outer) == ["tasks", "act_q", "act_q.lr", "act_q.lam", "maybe", "maybe.lr", "maybe.lam"]


def test_unknown_key_hint_prefers_the_same_name_elsewhere_then_a_close_sibling() -> None:
    assert unknown_key_hint(Inner, ["tasks"], extra=["env.tasks"]) == " (did you mean 'env.tasks'?)"
    assert unknown_key_hint(Outer, ["act_q", "lrr"]) == " (did you mean 'act_q.lr'?)"
    assert unknown_key_hint(Outer, ["tsks"]) == " (did you mean 'tasks'?)"
    assert unknown_key_hint(Inner, ["env", "lrr"], prefix="env.") == " (did you mean 'env.lr'?)"
    assert unknown_key_hint(Outer, ["nothing_like_it"]) == ""
