"""The byte tokenizer, re-exported from ``hrm_spawn.envs.tokenizer``: the env writes observations with it, the policy reads them."""

from hrm_spawn.envs.tokenizer import BYTE_OFFSET, CLS, PAD, RESERVED, SEP, VOCAB_SIZE, ByteTokenizer

__all__ = ["BYTE_OFFSET", "CLS", "PAD", "RESERVED", "SEP", "VOCAB_SIZE", "ByteTokenizer"]
