"""Import mini-swe-agent and litellm quietly, offline, and without reading the user's global settings.

At import, litellm fetches its model price map from the internet unless ``LITELLM_LOCAL_MODEL_COST_MAP``
is set (offline that is a wait for a timeout, on every import), and mini-swe-agent prints a banner and
loads ``~/.config/mini-swe-agent/.env`` into ``os.environ``. The defaults set here (only where the user
has not set them) use litellm's bundled price map, silence the banner, keep mini-swe-agent's config
folder under this project's data dir, and let this project compute costs itself.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from hrm_spawn.envs.paths import subdir

_DEFAULTS = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "MSWEA_SILENT_STARTUP": "1",
    "MSWEA_COST_TRACKING": "ignore_errors",  # costs are computed by EndpointModel, unknown prices allowed
}


def _set_defaults() -> None:
    for key, value in _DEFAULTS.items():
        os.environ.setdefault(key, value)
    if "MSWEA_GLOBAL_CONFIG_DIR" not in os.environ:
        os.environ["MSWEA_GLOBAL_CONFIG_DIR"] = str(subdir("mini-swe-agent"))


def litellm() -> Any:
    """The litellm module, imported with the offline defaults."""
    _set_defaults()
    # litellm's types trip pydantic's ReadOnly warning, at import and when it loads a provider lazily
    warnings.filterwarnings("ignore", message=".*the `ReadOnly` qualifier", category=UserWarning)
    try:
        import litellm as module
    except ImportError as exc:  # pragma: no cover - the llm extra is missing
        raise ImportError("the llm agent needs mini-swe-agent: pip install 'hrm-spawn[llm]'") from exc
    module.telemetry = False
    module.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):  # one INFO line per request otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    return module


def minisweagent() -> Any:
    """The minisweagent package, imported with the offline defaults."""
    litellm()
    try:
        import minisweagent as module
    except ImportError as exc:  # pragma: no cover - the llm extra is missing
        raise ImportError("the llm agent needs mini-swe-agent: pip install 'hrm-spawn[llm]'") from exc
    return module
