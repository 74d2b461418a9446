"""Tasks, sandboxes, agents, the outcome store and the spawn environments.

Importing ``hrm_spawn.envs`` registers ``HRMSpawn/SWESmith-v0`` with gymnasium (by module path, so nothing
heavy, no torch, is imported until the env is made); ``gymnasium.make("hrm_spawn.envs:HRMSpawn/SWESmith-v0",
...)`` imports it first by itself.
"""

from hrm_spawn.envs.registry import SPAWN_ENV_ID

__all__ = ["SPAWN_ENV_ID"]
