"""Streamed LLM text → sentences for TTS, and emotion / prosody tags (Naia's output format, docs/realtime.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.tts.tags import KNOWN_TAGS, TAG_RE, strip_tags

#: A sentence ends at ., !, ? or … (optionally followed by closing quotes/brackets) and blank,
#: or at a newline. Abbreviation-like tokens (one or two letters before a period, "e.g.")
#: do not end a sentence.
_END_RE = re.compile(r"(?<![A-Z][a-z])(?<!\b[A-Za-z])([.!?…]+[\"')\]]*)(\s+)|\n+")
#: A clause ends at ``,`` ``;`` or ``:`` followed by a blank, or at ``—`` (the clause-level first TTS start:
#: the first chunk may end there once it holds at least :data:`CLAUSE_MIN_WORDS` words).
_CLAUSE_RE = re.compile(r"[,;:]\s+|—\s*")
CLAUSE_MIN_WORDS = 4
#: Longest a tag can be while it is still being streamed ("[hesitation]" is 12 characters).
MAX_TAG_LEN = 32


@dataclass
class Tag:
    """One tag found in the reply: ``state`` is its lowercase name, ``tag`` the bracketed text."""

    state: str
    tag: str

    @property
    def known(self) -> bool:
        return self.state in KNOWN_TAGS


class TagScanner:
    """Finds bracket tags in text that arrives in pieces, even when a tag is split across
    pieces (``"[lau"`` + ``"ghing] ha"``).

    :meth:`feed` returns the text that is safe to pass on (a possibly unfinished ``[...`` at the
    end is held back, at most :data:`MAX_TAG_LEN` characters) and the tags completed in it.
    """

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> tuple[str, list[Tag]]:
        text = self._held + piece
        self._held = ""
        cut = text.rfind("[")
        if cut != -1 and "]" not in text[cut:] and len(text) - cut <= MAX_TAG_LEN:
            text, self._held = text[:cut], text[cut:]
        return text, [Tag(m.group(1), m.group(0)) for m in TAG_RE.finditer(text)]

    def flush(self) -> tuple[str, list[Tag]]:
        text, self._held = self._held, ""
        return text, [Tag(m.group(1), m.group(0)) for m in TAG_RE.finditer(text)]


class SentenceSplitter:
    """Cuts streamed text into sentences as soon as each is complete, so TTS can start on the
    first sentence while the LLM is still writing the rest.

    Args:
        min_chars: a shorter "sentence" is joined to the next one (avoids synthesising "Hi." and
            "Oh." alone, which sounds choppy and costs a TTS call each).
        max_chars: a sentence longer than this is cut at the last comma or space, so the first
            audio never waits for a run-on sentence.
        first_clause: the first chunk may end at a clause boundary (``,`` ``;`` ``:`` ``—``
            after at least :data:`CLAUSE_MIN_WORDS` words) instead of the end of the first
            sentence, so the first TTS request starts earlier; later chunks are sentences.
    """

    def __init__(self, min_chars: int = 12, max_chars: int = 220, first_clause: bool = False):
        self.min_chars = min_chars
        self.max_chars = max_chars
        self._clause_pending = first_clause
        self._buf = ""

    def feed(self, piece: str) -> list[str]:
        self._buf += piece
        out: list[str] = []
        start = 0
        if self._clause_pending:
            sentence = _END_RE.search(self._buf)
            for m in _CLAUSE_RE.finditer(self._buf):
                if sentence is not None and sentence.start() < m.start():
                    break  # a whole sentence comes first: cut it as a sentence below
                candidate = self._buf[: m.end()].strip()
                if len(strip_tags(candidate).split()) >= CLAUSE_MIN_WORDS:
                    out.append(candidate)
                    start = m.end()
                    break
        for m in _END_RE.finditer(self._buf, start):
            candidate = self._buf[start : m.end()].strip()
            if len(candidate) >= self.min_chars:
                out.append(candidate)
                start = m.end()
        self._buf = self._buf[start:]
        if out:
            self._clause_pending = False
        while len(self._buf) > self.max_chars:
            cut = max(self._buf.rfind(", ", 0, self.max_chars), self._buf.rfind(" ", 0, self.max_chars))
            cut = cut + 1 if cut > 0 else self.max_chars
            out.append(self._buf[:cut].strip())
            self._buf = self._buf[cut:]
        return [s for s in out if s]

    def flush(self) -> list[str]:
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []


def speakable(sentence: str) -> bool:
    """Whether a sentence has anything to say once tags are gone."""
    return bool(re.search(r"\w", strip_tags(sentence)))
