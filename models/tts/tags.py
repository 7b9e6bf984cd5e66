"""Emotion / prosody tags in model text (Naia's output format: docs/realtime.md).

The chat model mixes lowercase English bracket tags such as ``[laughing]``, ``[sigh]`` or
``[pause]`` into its answers. Tags outside the known vocabulary are still tags ("other tags are
passed through"), so :data:`TAG_RE` matches any lowercase bracketed word or words, not only
:data:`KNOWN_TAGS`. Uppercase ``[HAPPY]``, parenthesised ``(smiles)`` and ``*sighs*`` are not
tags under this contract and are left alone, and so are Piper's raw-phoneme blocks ``[[ ... ]]``.
"""

from __future__ import annotations

import re

#: The spec's known vocabulary (``emotion.updated.known`` is true for these).
KNOWN_TAGS = frozenset(
    "laughing laugh laughter chuckle giggle sigh exhale breath inhale pause hesitation gasp cough "
    "sneeze yawn sniff hum cry sob moan whisper shout cheer".split()
)

#: One tag: ``[`` + lowercase words joined by single spaces, ``_`` or ``-`` + ``]``; group 1 is
#: the tag name (``emotion.updated.state``). Not part of a ``[[...]]`` block.
_NAME = r"[a-z]+(?:[ _-][a-z]+)*"
TAG_RE = re.compile(rf"(?<!\[)\[({_NAME})\](?!\])")

# A run of tags with the blanks around them (not newlines).
_ONE = rf"(?<!\[)\[{_NAME}\](?!\])"
_TAG_RUN_RE = re.compile(rf"[ \t]*{_ONE}(?:[ \t]*{_ONE})*[ \t]*")
_CLOSING_PUNCT = ".,!?;:)]}'\"…"


def find_tags(text: str) -> list[str]:
    """Tag names in ``text`` in order of appearance (``"[sigh] ok [pause]"`` -> ``["sigh", "pause"]``)."""
    return TAG_RE.findall(text)


def strip_tags(text: str) -> str:
    """``text`` with its tags removed and the spacing around them tidied.

    A run of tags between words becomes one space; at the start or end of a line, or before
    closing punctuation, it disappears: ``"Oh [laughing] really [sigh]."`` -> ``"Oh really."``.
    Text without tags is returned unchanged.
    """
    if "[" not in text:
        return text

    def replace(m: re.Match) -> str:
        before = text[m.start() - 1] if m.start() > 0 else "\n"
        after = text[m.end()] if m.end() < len(text) else "\n"
        if before == "\n" or after == "\n" or after in _CLOSING_PUNCT or before in "([{":
            return ""
        return " "

    return _TAG_RUN_RE.sub(replace, text)
