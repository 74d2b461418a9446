"""What every layer shares and nothing above it owns: typed configs and the byte tokenizer.

``hrm_spawn.core`` imports no other part of the project, so envs, policies and trainers can all
depend on it without depending on each other.
"""
