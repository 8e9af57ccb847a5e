"""Read-only queries behind the web pages: jobs for the history and job pages, models and
languages for the option form. Nothing here changes a row; actions go through services."""
from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from transcription import services
from transcription.languages import LANGUAGES
from transcription.models import Job

from .languages import language_name

HISTORY_PAGE_SIZE = 25


def job(job_id: UUID) -> Job | None:
    return Job.objects.select_related("upload").filter(pk=job_id).first()


def jobs(status: str | None = None) -> QuerySet[Job]:
    """Jobs newest first, optionally of one status."""
    rows = Job.objects.select_related("upload").order_by("-created_at", "-id")
    if status in Job.Status.values:
        rows = rows.filter(status=status)
    return rows


def history_page(number: int | str | None, status: str | None = None) -> Page:
    return Paginator(jobs(status).defer("result"), HISTORY_PAGE_SIZE).get_page(number)


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
