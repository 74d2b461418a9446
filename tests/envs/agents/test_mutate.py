"""Each mutation family inverts the SWE-smith procedural modifier it is built for; removals stay broken."""

from __future__ import annotations

import libcst
import pytest

from hrm_spawn.envs.agents.mutate import FAMILIES, mutate_source
from hrm_spawn.envs.swesmith_py import python_modifiers

# SWE-smith's modifier classes by name (imported without the other languages' grammars)
_MODS = {type(m).__name__: type(m) for m in python_modifiers()}
ControlIfElseInvertModifier = _MODS["ControlIfElseInvertModifier"]
ControlShuffleLinesModifier = _MODS["ControlShuffleLinesModifier"]
OperationChangeConstantsModifier = _MODS["OperationChangeConstantsModifier"]
OperationChangeModifier = _MODS["OperationChangeModifier"]
OperationSwapOperandsModifier = _MODS["OperationSwapOperandsModifier"]
RemoveConditionalModifier = _MODS["RemoveConditionalModifier"]

IF_ELSE = "def f(a):\n    if a > 2:\n        x = 1\n    else:\n        x = 2\n    return x\n"
SHUFFLE = (
    'def f(a):\n    """Doc."""\n    b = a + 1\n    for i in range(3):\n        b += i\n'
    "    c = b * 2\n    return c\n"
)
CASES = [
    (OperationChangeModifier, "operators", "def f(a, b):\n    return a + b\n"),
    (OperationChangeModifier, "operators", "def f(a, b):\n    return a * b\n"),
    (OperationChangeModifier, "operators", "def f(a, b):\n    return a & b\n"),
    (OperationSwapOperandsModifier, "operands", "def f(a, b):\n    return a - b\n"),
    (OperationSwapOperandsModifier, "operands", "def f(a, b):\n    return a and b\n"),
    (OperationChangeConstantsModifier, "constants", "def f(a):\n    return a[len(a) - 1]\n"),
    (OperationChangeConstantsModifier, "constants", "def f(a):\n    return 1 + a\n"),
    (ControlIfElseInvertModifier, "control", IF_ELSE),
    (ControlShuffleLinesModifier, "statements", SHUFFLE),
]


def inject(modifier_cls, source: str, seed: int) -> str:
    """Apply a SWE-smith modifier the way it runs on an entity (every node eligible), until it changes."""
    modifier = modifier_cls(likelihood=1.0, seed=seed)
    module = libcst.parse_module(source)
    for _ in range(10):
        code = module.visit(modifier.Transformer(modifier)).code
        if code != source:
            return code
    pytest.skip(f"{modifier_cls.__name__} made no change with seed {seed}")


def all_lines(text: str) -> range:
    return range(1, text.count("\n") + 2)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("modifier", "family", "original"), CASES)
def test_family_restores_what_the_modifier_changed(modifier, family, original, seed):
    buggy = inject(modifier, original, seed)
    cands = mutate_source("m.py", buggy, all_lines(buggy), [family])
    texts = [c.text for c in cands]
    assert original in texts, (buggy, [c.description for c in cands])
    assert all(c.family == family and c.file == "m.py" for c in cands)
    others = set(FAMILIES) - {family} - ({"operands"} if family == "statements" else set())
    if modifier is OperationChangeModifier:  # its inverse is in one family only
        assert original not in [c.text for c in mutate_source("m.py", buggy, all_lines(buggy), others)]


def test_removed_code_is_not_restored_by_any_family():
    buggy = inject(RemoveConditionalModifier, IF_ELSE, 0)
    assert "if" not in buggy
    cands = mutate_source("m.py", buggy, all_lines(buggy), FAMILIES)
    assert IF_ELSE not in [c.text for c in cands]


def test_candidates_are_deterministic_unique_and_parse():
    source = SHUFFLE + IF_ELSE.replace("def f", "def g")
    one = mutate_source("m.py", source, all_lines(source), FAMILIES)
    two = mutate_source("m.py", source, all_lines(source), FAMILIES)
    assert [c.text for c in one] == [c.text for c in two]
    assert len({c.text for c in one}) == len(one) and source not in {c.text for c in one}
    for cand in one:
        compile(cand.text, "m.py", "exec")


def test_only_the_given_lines_change_and_their_order_ranks_candidates():
    source = "def f(a, b):\n    x = a + b\n    y = a - b\n    return x * y\n"
    cands = mutate_source("m.py", source, [3, 2], ["operators"])
    assert {c.line for c in cands} == {2, 3}
    assert cands[0].line == 3  # the first-ranked line comes first
    assert "x * y" in cands[0].text


def test_unknown_family_and_unparsable_source():
    with pytest.raises(ValueError, match="telepathy"):
        mutate_source("m.py", "x = 1\n", [1], ["telepathy"])
    assert mutate_source("m.py", "def (:\n", [1], FAMILIES) == []
