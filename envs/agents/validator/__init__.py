"""Warm fork validator: one process imports pytest, then forks a child per candidate.

Standalone (stdlib + pytest, relative imports only): the repair agents copy this package into the
sandbox under the distinctive name ``hrm_spawn_validator`` (``repair.validator_files``) and run it with
the sandbox's interpreter, ``python .hrm-agent/hrm_spawn_validator/launch.py job.json result.json``,
inside the repository. ``launch.py`` takes the package's folders off ``sys.path`` before any repository
code is imported, and the name keeps its modules in ``sys.modules`` from shadowing the repository's.

One concern per module: ``forking`` (pytest in a forked child, its outcomes through a pipe, timeouts),
``livecode`` (which live functions a candidate changes, and their new code), ``warm`` (the warm
session), ``job`` (the job file in, validate or run, the result file out).

The parent never imports the repository's own modules, so every child imports the candidate's code
fresh; third-party modules the first child imported are imported into the parent afterwards, so later
children start warm. No stale bytecode: bytecode is neither written nor read from ``__pycache__``
(``sys.pycache_prefix`` points at an empty directory), because a same-size edit written within the
same second as a cached .pyc would otherwise run the old code.

Validate mode keeps a second warm process too: a child of the parent that runs one pytest session on
the buggy tree, imports and collects the F2P+P2P tests once, and then serves candidates. For each one
it forks a grandchild that swaps the ``__code__`` of the live functions the candidate changed and runs
the collected items, so a candidate costs a fork and its tests, not pytest start-up and collection.
Only edits confined to function bodies take that path, and only when no changed function ran while the
session imported and collected (its results could be stored anywhere); anything else (module or class
code, decorators, a file whose live code does not match its source) runs in a fresh-import child from
the parent as before. Files are still written to disk either way (tracebacks, lazy imports, subprocesses).

Job (JSON): ``mode`` "validate" or "run"; ``f2p``/``p2p`` test ids; ``candidates``
[{"id", "files": {path: text}}]; ``baseline`` {"f2p": n, "p2p": m} (the counts to beat);
``p2p_mode`` "improved" (default: P2P only when F2P improves), "all" or "never"; ``stop_on_fix``;
``timeout_s`` per child; ``deadline_s`` for the whole job; ``coverage`` (run mode: per-test lines);
``fast`` (default true: the warm session above). Each validate result names its ``path``, "fast" or
"fresh" (with ``fresh_reason``).
"""
