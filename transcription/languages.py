"""Whisper's languages: codes, names, and turning what a client sent into a code."""
from __future__ import annotations

from faster_whisper.tokenizer import _LANGUAGE_CODES

# Names as Whisper's tokenizer spells them (mlx-whisper ships the same table).
try:
    from mlx_whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE
except Exception:  # mlx may be absent on an unusual platform; fall back to the bare codes
    LANGUAGES = {code: code for code in _LANGUAGE_CODES}
    TO_LANGUAGE_CODE = {}

CODES = frozenset(_LANGUAGE_CODES)
AUTO = "auto"


def normalise_language(value: str) -> str:
    """'en', 'EN', 'english' → 'en'; 'auto' (or 'detect') → 'auto'; otherwise ValueError."""
    key = (value or "").strip().lower()
    if key in {"auto", "detect", "none"}:
        return AUTO
    if key in CODES:
        return key
    if key in TO_LANGUAGE_CODE and TO_LANGUAGE_CODE[key] in CODES:
        return TO_LANGUAGE_CODE[key]
    raise ValueError(
        f"unknown language {value!r}: use 'auto' or an ISO-639-1 code Whisper knows, e.g. en, ru, de"
    )
