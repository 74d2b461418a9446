import numpy as np
import pytest

from hrm_spawn.policies.tokenizer import CLS, PAD, SEP, VOCAB_SIZE, ByteTokenizer


def test_encode_layout_and_padding():
    tok = ByteTokenizer(8)
    ids = tok.encode("ab")
    assert ids.dtype == np.int64 and ids.shape == (8,)
    assert ids.tolist() == [CLS, ord("a") + 4, ord("b") + 4, PAD, PAD, PAD, PAD, PAD]
    assert VOCAB_SIZE == 260 and int(tok.encode("\xff" * 10).max()) < VOCAB_SIZE


def test_encode_truncates_and_decodes():
    tok = ByteTokenizer(5)
    ids = tok.encode("hello world")
    assert ids[0] == CLS and tok.decode(ids) == "hell"


def test_segments_share_the_length():
    tok = ByteTokenizer(1 + 4 + 1 + 4)
    ids = tok.encode_segments(["a" * 100, "b" * 100])
    text = tok.decode(ids)
    assert text == "aaaa\nbbbb" and (ids == SEP).sum() == 1


def test_short_segment_leaves_room_to_the_others():
    tok = ByteTokenizer(1 + 9 + 1 + 1)
    assert tok.decode(tok.encode_segments(["x" * 50, "y"])) == "x" * 9 + "\ny"


def test_explicit_budgets_and_errors():
    tok = ByteTokenizer(16)
    assert tok.decode(tok.encode_segments(["abcdef", "ghijk"], budgets=[2, 3])) == "ab\nghi"
    with pytest.raises(ValueError, match="2 budgets for 1 segments"):
        tok.encode_segments(["a"], budgets=[1, 2])
    with pytest.raises(ValueError, match="seq_len must be >= 2"):
        ByteTokenizer(1)
