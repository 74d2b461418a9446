"""The byte tokenizer, re-exported from ``hrm_spawn.core.tokenizer`` (shared by env and policy)."""

from hrm_spawn.core.tokenizer import BYTE_OFFSET, CLS, PAD, RESERVED, SEP, VOCAB_SIZE, ByteTokenizer

__all__ = ["BYTE_OFFSET", "CLS", "PAD", "RESERVED", "SEP", "VOCAB_SIZE", "ByteTokenizer"]
