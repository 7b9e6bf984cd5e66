"""The realtime engine's pure pieces: sentence splitting, streamed tag scanning, turn detection."""

from __future__ import annotations

import pytest

from deployments.realtime.text import SentenceSplitter, TagScanner, speakable
from deployments.realtime.turns import TurnDetectionConfig, TurnDetector


def feed_all(splitter: SentenceSplitter, pieces: list[str]) -> list[str]:
    out = []
    for p in pieces:
        out += splitter.feed(p)
    return out + splitter.flush()


def test_sentences_are_released_as_soon_as_complete():
    s = SentenceSplitter()
    assert s.feed("The capital of France is Paris.") == []  # no blank after the period yet
    assert s.feed(" It is") == ["The capital of France is Paris."]
    assert feed_all(s, [" lovely in spring!", " Visit soon"]) == ["It is lovely in spring!", "Visit soon"]


def test_short_sentences_join_and_long_ones_are_cut():
    assert feed_all(SentenceSplitter(), ["Hi. ", "Oh. ", "How are you today? ", "Fine."]) == [
        "Hi. Oh. How are you today?",
        "Fine.",
    ]
    long = "word " * 100
    parts = feed_all(SentenceSplitter(max_chars=60), [long])
    assert all(len(p) <= 60 for p in parts) and " ".join(parts).split() == long.split()


def test_decimals_and_abbreviations_do_not_split():
    assert feed_all(SentenceSplitter(), ["It costs 3.50 dollars, e.g. today. Then more."]) == [
        "It costs 3.50 dollars, e.g. today.",
        "Then more.",
    ]


@pytest.mark.parametrize(
    "pieces",
    [
        ["Oh [laughing] that is funny."],
        ["Oh [lau", "ghing] that is funny."],
        ["Oh [", "laughing", "] that is funny."],
    ],
)
def test_tag_split_across_pieces_is_found_once(pieces):
    scanner, text, tags = TagScanner(), "", []
    for p in pieces:
        t, found = scanner.feed(p)
        text, tags = text + t, tags + found
    t, found = scanner.flush()
    text, tags = text + t, tags + found
    assert text == "Oh [laughing] that is funny."
    assert [(t.state, t.tag, t.known) for t in tags] == [("laughing", "[laughing]", True)]


def test_unknown_tag_and_unclosed_bracket():
    scanner = TagScanner()
    text, tags = scanner.feed("Well [deep breath] see [1]")
    assert [(t.state, t.known) for t in tags] == [("deep breath", False)]
    assert text == "Well [deep breath] see [1]"
    held, _ = scanner.feed("a [not closed")
    assert held == "a "
    assert scanner.flush()[0] == "[not closed"
    assert not speakable("[sigh] [pause]") and speakable("[sigh] okay")


def frames(probs):
    det = TurnDetector(TurnDetectionConfig(silence_duration_ms=96), frame_ms=32)
    out = []
    for i, p in enumerate(probs):
        d = det.step(p, (i + 1) * 32)
        if d:
            out.append((d, (i + 1) * 32))
    return out, det


def test_turn_detector_hysteresis_and_silence():
    events, det = frames([0.1, 0.9, 0.9, 0.4, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1])
    # 0.4 is above threshold - 0.15: still speech; three silent frames (96 ms) end the turn
    assert events == [("started", 64), ("stopped", 352)]
    assert det.speech_start_ms == 32 and det.speech_end_ms == 256


def test_turn_detector_drops_blips_and_parses_config():
    events, _ = frames([0.9, 0.1, 0.1, 0.1])
    assert events == [("started", 32), ("dropped", 128)]
    assert TurnDetectionConfig.from_wire(None).type == "none"
    cfg = TurnDetectionConfig.from_wire({"type": "server_vad", "silence_duration_ms": 800})
    assert (cfg.threshold, cfg.prefix_padding_ms, cfg.silence_duration_ms) == (0.5, 300, 800)
    for bad in ({"type": "magic"}, {"threshold": 1.5}, {"silence_duration_ms": -1}):
        with pytest.raises(ValueError):
            TurnDetectionConfig.from_wire(bad)


def test_first_chunk_may_end_at_a_clause_then_sentences():
    splitter = SentenceSplitter(first_clause=True)
    out = feed_all(splitter, ["Paris is the capital, ", "and it is lovely in spring, ", "I hear. ", "Next one, here. "])
    # The first chunk ends at the first clause with >= CLAUSE_MIN_WORDS words; later ones are sentences.
    assert out[0] == "Paris is the capital,"
    assert out[1] == "and it is lovely in spring, I hear."
    # Too few words before the comma: no clause cut, the first sentence is released whole.
    assert feed_all(SentenceSplitter(first_clause=True), ["Yes, it is Paris. "]) == ["Yes, it is Paris."]
    # Tags do not count as words and stay whole.
    assert (
        feed_all(SentenceSplitter(first_clause=True), ["[laughter] Well, ", "that is true. "])[0]
        == "[laughter] Well, that is true."
    )
    # Without first_clause the splitter is unchanged.
    assert feed_all(SentenceSplitter(), ["Paris is the capital, and it is lovely. "]) == [
        "Paris is the capital, and it is lovely."
    ]
