"""Surgery v3: ingredients adapted to where they go, assignments synthesised, closures under branches."""

from __future__ import annotations

import ast
import re

from hrm_spawn.envs.agents.localize import Site
from hrm_spawn.envs.agents.surgery import surgery_candidates
from hrm_spawn.envs.agents.surgery_adapt import (
    attrs_to_locals,
    first_match_loops,
    handler_binds,
    rename_self_attr,
    synthesised_assigns,
    unwrap_guards,
)
from hrm_spawn.envs.agents.surgery_pantry import own_binds

FILTERING = (
    "for key in list(rows):\n    if keep(rows[key]):\n        hits.append(key)\n        touch(rows, key)\n"
)


def _same(a: str, b: str) -> bool:
    return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))


def test_a_guard_on_a_name_not_in_scope_is_unwrapped():
    out = unwrap_guards(FILTERING, {"keep"})
    assert out is not None and _same(
        out, "for key in list(rows):\n    hits.append(key)\n    touch(rows, key)\n"
    )
    assert unwrap_guards(FILTERING, {"other"}) is None  # the guard's names are all here: nothing to do
    assert unwrap_guards("if keep(x):\n    y = 1\n", {"keep"}) is None  # nothing would be left
    with_else = "for k in rows:\n    if keep(k):\n        a(k)\n    else:\n        b(k)\n"
    assert unwrap_guards(with_else, {"keep"}) is None  # an else branch is a choice, not a filter


def test_a_handler_that_returns_a_default_binds_it_instead():
    donor = "try:\n    table = tables[name]\nexcept KeyError:\n    return {}\n"
    out = handler_binds(donor)
    assert out is not None and _same(
        out, "try:\n    table = tables[name]\nexcept KeyError:\n    table = {}\n"
    )
    assert handler_binds("try:\n    a = f()\n    b = g()\nexcept E:\n    return 1\n") is None  # which one?
    assert handler_binds("table = tables[name]\n") is None


def test_a_field_is_renamed_and_an_attribute_read_as_a_local():
    assert rename_self_attr("self.memory = data\n", "memory", "cache") == "self.cache = data\n"
    assert rename_self_attr("self.memory_size = 1\n", "memory", "cache") == "self.memory_size = 1\n"
    guard = "if document.doc_id in table:\n    raise ValueError(document.doc_id)\n"
    out = attrs_to_locals(guard, {"doc_id", "table"})
    assert out is not None and _same(out, "if doc_id in table:\n    raise ValueError(doc_id)\n")
    assert attrs_to_locals("x = self.doc_id\n", {"doc_id"}) is None  # a field stays a field


def test_assignments_are_synthesised_from_the_function_itself():
    func = ast.parse(
        "def search(self, cond):\n"
        "    if cached_results is not None:\n"
        "        return cached_results\n"
        "    docs = [d for d in self.rows if cond(d)]\n"
        "    self._query_cache[cond] = docs\n"
        "    self._next = next_id + 1\n"
        "    return docs\n"
    ).body[0]
    made = dict(synthesised_assigns(func, ["cached_results", "next_id"]))
    assert made == {
        "cached_results = self._query_cache.get(cond)\n": "lookup",  # shares a word with the mapping
    }
    func = ast.parse("def nxt(self):\n    self._next_id = next_id + 1\n    return next_id\n").body[0]
    assert synthesised_assigns(func, ["next_id"]) == [("next_id = self._next_id\n", "field")]


def test_own_binds_leave_out_the_locals_of_closures():
    func = ast.parse(
        "def update(self, fields):\n"
        "    ids = []\n"
        "    def updater(table):\n"
        "        _cond = make()\n"
        "    squares = [n * n for n in ids]\n"
    ).body[0]
    assert own_binds(func) == {"self", "fields", "ids", "updater", "squares"}


# a module where one branch's closure lost its loop; the other branch's closure filters with a guard
CLOSURES = """def update(table_rows, fields, cond=None):
    updated = []
    if cond is not None:
        def updater(table):
            _cond = make_cond(cond)
            for doc_id in list(table.keys()):
                if _cond(table[doc_id]):
                    updated.append(doc_id)
                    table[doc_id].update(fields)
        apply(table_rows, updater)
    else:
        def updater(table):
            pass
        apply(table_rows, updater)
    return updated


def make_cond(cond):
    return cond


def apply(rows, fn):
    fn(rows)
"""
FIXED = CLOSURES.replace(
    "            pass\n",
    "            for doc_id in list(table.keys()):\n"
    "                updated.append(doc_id)\n"
    "                table[doc_id].update(fields)\n",
)


def test_a_closure_under_a_branch_gets_the_sibling_loop_without_its_guard():
    sources = {"pkg/ops.py": CLOSURES}
    line = next(n for n, text in enumerate(CLOSURES.splitlines(), 1) if text.strip() == "pass")
    sites = [Site("pkg/ops.py", line, 1.0), Site("pkg/ops.py", line - 1, 0.9)]
    cands = surgery_candidates(sources.__getitem__, ["pkg/ops.py"], sites, [], ["loop"])
    fixed = [k for k, c in enumerate(cands) if _same(c.text, FIXED)]
    assert fixed and fixed[0] < 10, [c.description for c in cands[:10]]
    assert (
        "unwrapped guard" in cands[fixed[0]].description and "update.updater" in cands[fixed[0]].description
    )
    # `_cond` is the sibling closure's local: never grafted where it is not bound
    assert not any("_cond(table" in c.text.split("else:")[1] for c in cands)


CACHED = """class Store:
    def __init__(self):
        self._rows = {}
        self._memo = {}

    def find(self, key):
        if memo_hit is not None:
            return memo_hit
        found = [r for r in self._rows.values() if r == key]
        self._memo[key] = found
        return found
"""


def test_a_cache_lookup_is_synthesised_before_the_first_use():
    sources = {"pkg/store.py": CACHED}
    line = next(n for n, text in enumerate(CACHED.splitlines(), 1) if "if memo_hit" in text)
    failure = "E   UnboundLocalError: cannot access local variable 'memo_hit' where it is not associated with a value"
    cands = surgery_candidates(
        sources.__getitem__, ["pkg/store.py"], [Site("pkg/store.py", line, 1.0)], [failure], ["assign"]
    )
    want = CACHED.replace(
        "        if memo_hit", "        memo_hit = self._memo.get(key)\n        if memo_hit"
    )
    fixed = [k for k, c in enumerate(cands) if c.text == want]
    assert fixed and fixed[0] < 3, [c.description for c in cands[:5]]
    assert "synthesised lookup" in cands[fixed[0]].description


TABLES = """class Table:
    def __init__(self, storage, name):
        self.storage, self.name = storage, name

    def read(self):
        tables = self.storage.load()
        try:
            table = tables[self.name]
        except KeyError:
            return {}
        return table

    def update(self, fn):
        tables = self.storage.load()
        if tables is None:
            tables = {}
        table = dict(raw_table)
        fn(table)
        tables[self.name] = table
        self.storage.save(tables)
"""


def test_a_default_returned_elsewhere_is_bound_here_after_what_it_reads():
    # `update` lost `try: raw_table = tables[self.name] except KeyError: raw_table = {}`
    sources = {"pkg/table.py": TABLES}
    line = next(n for n, text in enumerate(TABLES.splitlines(), 1) if "dict(raw_table)" in text)
    failure = "E   NameError: name 'raw_table' is not defined"
    sites = [Site("pkg/table.py", line, 1.0)]
    cands = surgery_candidates(sources.__getitem__, ["pkg/table.py"], sites, [failure], ["assign", "wrapper"])
    want = TABLES.replace(
        "        table = dict(raw_table)",
        "        try:\n            raw_table = tables[self.name]\n        except KeyError:\n"
        "            raw_table = {}\n        table = dict(raw_table)",
    )
    fixed = [k for k, c in enumerate(cands) if c.file == "pkg/table.py" and _same(c.text, want)]
    assert fixed and fixed[0] < 15, [c.description for c in cands[:15]]
    assert "return->bind, renamed table->raw_table" in cands[fixed[0]].description
    for cand in cands:  # nothing in `update` reads `tables` above `tables = self.storage.load()`
        body = cand.text[cand.text.index("    def update") :].splitlines()
        load = body.index("        tables = self.storage.load()")
        assert not any(re.search(r"\btables\b(?!\s*=)", row) for row in body[:load]), cand.description


def test_an_assignment_nothing_reads_is_never_grafted():
    sources = {
        "pkg/m.py": "def double(a):\n    return a * 2\n\n\ndef other(a):\n    spare = a + 1\n    return spare\n"
    }
    cands = surgery_candidates(sources.__getitem__, ["pkg/m.py"], [Site("pkg/m.py", 2, 1.0)], [], ["assign"])
    assert not any("into double" in c.description for c in cands)  # `spare` is read nowhere in `double`
    sources["pkg/m.py"] = sources["pkg/m.py"].replace("return a * 2", "return spare * 2")
    cands = surgery_candidates(sources.__getitem__, ["pkg/m.py"], [Site("pkg/m.py", 2, 1.0)], [], ["assign"])
    assert cands[0].description.startswith("insert assign `spare = a + 1` (from other) into double")


FINDER = """class Table:
    def search(self, cond):
        return [Doc(v, k) for k, v in self.rows.items() if cond(v)]

    def get(self, cond=None, key=None):
        if key is not None:
            return self.rows.get(key)
        elif cond is not None:
            self.hits += 1
        return None


class Doc:
    def __init__(self, value, key):
        self.value, self.key = value, key
"""


def test_a_filtered_comprehension_becomes_a_first_match_loop_inside_the_branch_that_tests_it():
    func = ast.parse(FINDER).body[0].body[0]
    loops = first_match_loops(func)
    assert [ast.dump(ast.parse(t)) for t in loops] == [
        ast.dump(ast.parse("for k, v in self.rows.items():\n    if cond(v):\n        return Doc(v, k)\n"))
    ]
    sources = {"pkg/t.py": FINDER}
    line = next(n for n, text in enumerate(FINDER.splitlines(), 1) if text.strip() == "return None")
    sites = [Site("pkg/t.py", line, 1.0), Site("pkg/t.py", line - 1, 0.9)]
    cands = surgery_candidates(sources.__getitem__, ["pkg/t.py"], sites, [], ["loop"])
    # below `return None` the site is as close, but `cond(v)` belongs where `cond is not None` holds
    want = FINDER.replace(
        "            self.hits += 1\n",
        "            for k, v in self.rows.items():\n                if cond(v):\n                    return Doc(v, k)\n"
        "            self.hits += 1\n",
    )
    assert _same(cands[0].text, want), [c.description for c in cands[:5]]  # in the `cond is not None` branch
