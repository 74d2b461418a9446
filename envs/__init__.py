"""Tasks, sandboxes, agents, the outcome store and the spawn environments.

Importing ``envs`` registers ``HRMSpawn/SWESmith-v0`` with gymnasium (by module path, so nothing heavy,
no torch, is imported until the env is made).
"""

from hrm_spawn.envs.registry import SPAWN_ENV_ID

__all__ = ["SPAWN_ENV_ID"]
