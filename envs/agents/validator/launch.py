"""Start the validator from its shipped folder: ``python <folder>/launch.py JOB.json RESULT.json``.

Run as a script, Python puts this folder first on ``sys.path``, where its modules (``job``, ``warm``, ...)
would shadow the repository's own modules of those names. So this folder comes off the path, the folder
above goes on it just long enough to import the package under its folder's name (its modules import each
other relatively), and both are off the path before the job imports any repository code.
"""

from __future__ import annotations

import importlib
import os
import sys


def main() -> int:
    here = os.path.dirname(os.path.realpath(__file__))
    parent, package = os.path.split(here)
    sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) != here]
    sys.path.insert(0, parent)
    try:
        job = importlib.import_module(f"{package}.job")
    finally:
        sys.path.remove(parent)
    return job.main(sys.argv)


if __name__ == "__main__":
    sys.exit(main())
