"""What the options form offers: the installed models and engines, and the languages by name.
(Jobs are read through transcription.selectors, as the API and the admin read them.)"""
from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext as _

from transcription import services
from transcription.languages import LANGUAGES

from .languages import language_name


@dataclass(frozen=True)
class ModelChoice:
    name: str
    multilingual: bool
    engines: tuple[str, ...]
    parameters: str


def installed_models() -> tuple[list[ModelChoice], str | None, str, list[str]]:
    """(installed models, default model, default engine, available engines): GET /models' source."""
    listing = services.models_listing()
    installed = [
        ModelChoice(m["name"], m["multilingual"], tuple(m["engines"]), m["parameters"])
        for m in listing["models"] if m["installed"]
    ]
    return installed, listing["default"], listing["engine"], list(listing["engines_available"])


def language_choices() -> list[tuple[str, str]]:
    """("auto", "Detect automatically") then every Whisper language, by name in the page's language."""
    named = sorted(((code, language_name(code)) for code in LANGUAGES), key=lambda c: c[1].casefold())
    return [("auto", _("Detect automatically")), *named]
