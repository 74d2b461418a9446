"""Byte-level tokenizer shared by the env (observations) and the policy (embedding table).

No vocabulary file and no download: ids 0-3 are special, byte ``b`` is id ``b + 4`` (vocab 260).
"""

from __future__ import annotations

import numpy as np

PAD, CLS, SEP, RESERVED = 0, 1, 2, 3
BYTE_OFFSET = 4
VOCAB_SIZE = 256 + BYTE_OFFSET


class ByteTokenizer:
    vocab_size = VOCAB_SIZE

    def __init__(self, seq_len: int) -> None:
        if seq_len < 2:
            raise ValueError(f"ByteTokenizer: seq_len must be >= 2 (cls + one byte), got {seq_len}")
        self.seq_len = seq_len

    @staticmethod
    def _bytes(text: str) -> np.ndarray:
        return (
            np.frombuffer(text.encode("utf-8", errors="replace"), dtype=np.uint8).astype(np.int64)
            + BYTE_OFFSET
        )

    def encode(self, text: str) -> np.ndarray:
        """``[cls, bytes...]`` truncated to ``seq_len`` and padded with 0."""
        return self._pack([self._bytes(text)[: self.seq_len - 1]])

    def encode_segments(self, segments: list[str], budgets: list[int] | None = None) -> np.ndarray:
        """``[cls, seg1, sep, seg2, sep, ...]``: each segment is cut to its budget of bytes.

        Without budgets the room left after cls and separators is shared equally, and what a short
        segment leaves unused goes to the longer ones, so a long first segment cannot starve the rest.
        """
        if not segments:
            return self.encode("")
        pieces = [self._bytes(s) for s in segments]
        room = self.seq_len - 1 - (len(segments) - 1)
        if room < 0:
            raise ValueError(f"ByteTokenizer: {len(segments)} segments do not fit in seq_len {self.seq_len}")
        if budgets is None:
            budgets = _fair_shares([len(p) for p in pieces], room)
        elif len(budgets) != len(segments):
            raise ValueError(f"ByteTokenizer: {len(budgets)} budgets for {len(segments)} segments")
        elif any(b < 0 for b in budgets):
            raise ValueError(f"ByteTokenizer: budgets must be >= 0, got {budgets}")
        return self._pack([p[:b] for p, b in zip(pieces, budgets, strict=True)])

    def _pack(self, pieces: list[np.ndarray]) -> np.ndarray:
        out = np.zeros(self.seq_len, dtype=np.int64)
        ids = [np.array([CLS], dtype=np.int64)]
        for i, piece in enumerate(pieces):
            if i:
                ids.append(np.array([SEP], dtype=np.int64))
            ids.append(piece)
        flat = np.concatenate(ids)[: self.seq_len]
        out[: len(flat)] = flat
        return out

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Bytes back to text; separators become newlines, other specials are dropped (for debugging)."""
        data = bytearray()
        for i in np.asarray(ids, dtype=np.int64).tolist():
            if i >= BYTE_OFFSET:
                data.append(i - BYTE_OFFSET)
            elif i == SEP:
                data.extend(b"\n")
        return data.decode("utf-8", errors="replace")


def _fair_shares(lengths: list[int], room: int) -> list[int]:
    """Water-filling: equal shares, with what short segments leave unused handed to the others."""
    shares = [0] * len(lengths)
    open_ = list(range(len(lengths)))
    while open_ and room > 0:
        each = max(room // len(open_), 1)
        still_open = []
        for i in open_:
            # each >= 1, so every pass hands out at least one byte and the loop ends.
            give = min(each, lengths[i] - shares[i], room)
            shares[i] += give
            room -= give
            if shares[i] < lengths[i]:
                still_open.append(i)
        open_ = still_open
    return shares
