"""Whole characters only, and stop sequences cut even when split across chunks."""

from __future__ import annotations

import pytest

from chatbot.engine.text_stream import IncrementalDetokenizer, StopSequenceFilter
from chatbot.engine.transformers_engine import TransformersEngine

TEXT = "Ünïcödé 日本語のテキスト and emoji 🙂🚀👩‍👩‍👧 mixed with ASCII."


@pytest.mark.slow
def test_detokenizer_never_emits_half_a_character(embedded_engine: TransformersEngine) -> None:
    tokenizer = embedded_engine._state().tokenizer
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(TEXT) // 4  # byte-level pieces: some characters span tokens
    detokenizer = IncrementalDetokenizer(tokenizer)
    chunks = [detokenizer.add(i) for i in ids]
    chunks.append(detokenizer.flush())
    assert all("\ufffd" not in c for c in chunks)
    assert "".join(chunks) == tokenizer.decode(ids)
    assert sum(1 for c in chunks if c == "") > 0  # some tokens were held back


@pytest.mark.parametrize(
    ("pieces", "stops", "shown", "stopped"),
    [
        (["Hello wor", "ld. END here"], ["END"], "Hello world. ", True),
        (["abc E", "N", "D"], ["END"], "abc ", True),
        (["abc E", "NX"], ["END"], "abc ENX", False),
        (["one\n\nUser:", " more"], ["\n\nUser:", "###"], "one", True),
        (["no stops at all"], [], "no stops at all", False),
        (["aXb", "Y"], ["bY", "XbZ"], "aX", True),
    ],
)
def test_stop_filter(pieces: list[str], stops: list[str], shown: str, stopped: bool) -> None:
    stop_filter = StopSequenceFilter(stops)
    out = "".join(stop_filter.feed(p) for p in pieces) + stop_filter.flush()
    assert out == shown
    assert stop_filter.stopped is stopped
