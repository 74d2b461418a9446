"""Edits rendered as text splices are byte-identical to libcst's full-module rewrite."""

from __future__ import annotations

import pytest
from fixtures.calc_source import PACKAGE

from hrm_spawn.envs.agents.mutate import FAMILIES, _collect

TRICKY = '''\
class Box:
    """A docstring."""

    def area(self, w, h):
        # leading comment moves with its statement
        a = w * (h + 1)
        b = (a if a > 0 else -a)
        c = [x - 1 for x in range(a, b)]  # trailing comment
        if a < b and not c:
            return a
        else:
            return b

    @property
    def size(self):
        n = len(self.items)
        m = n // 2
        return n - m
'''


@pytest.mark.parametrize("source", [TRICKY, *PACKAGE.values()])
def test_spliced_edits_equal_the_full_rewrite(source):
    module, edits = _collect(source, range(1, source.count("\n") + 2), set(FAMILIES))
    spliced = [e for e in edits if e.splice is not None]
    assert len(spliced) >= len(edits) / 2  # most edits take the fast way
    for edit in spliced:
        start, end, new = edit.splice
        assert source[:start] + new + source[end:] == module.deep_replace(edit.old, edit.new).code, (
            edit.description
        )
