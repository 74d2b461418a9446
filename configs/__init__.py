"""The YAML presets (``quickstart``, ``policy/hrm-tiny``, ...), shipped as package data.

Found through ``importlib.resources`` (``hrm_spawn.envs.config.preset_dir``), so an installed wheel has them too.
"""
