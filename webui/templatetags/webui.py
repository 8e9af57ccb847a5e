"""Template filters for times, sizes and statuses, shared by the pages and the admin."""
from __future__ import annotations

from django import template
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from transcription.models import JobStatus

register = template.Library()

# The steps of the API's human_size (transcription/uploads.py), in the page's language.
SIZES = (gettext_lazy("%(value)s bytes"), gettext_lazy("%(value)s KB"), gettext_lazy("%(value)s MB"),
         gettext_lazy("%(value)s GB"))


@register.filter
def clock(seconds) -> str:
    """125.4 → "2:05"; 3725 → "1:02:05"; None → "—"."""
    if seconds is None or seconds == "":
        return "—"
    total = max(0, int(float(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def stamp(seconds) -> str:
    """A segment time with tenths: 3.46 → "0:03.4"."""
    if seconds is None:
        return ""
    value = max(0.0, float(seconds))
    return f"{clock(value)}.{int(value * 10) % 10}"


@register.filter
def secs(seconds) -> str:
    """1.234 → "1.23 s"."""
    if seconds is None or seconds == "":
        return "—"
    return _("%(value)s s") % {"value": number_format(round(float(seconds), 2), 2)}  # rounded, localised


@register.filter
def filesize(n) -> str:
    """1153434 → "1.1 MB" ("1,1 МБ" on a Russian page); None → "—"."""
    if n is None or n == "":
        return "—"
    size = float(n)
    if size < 1024:
        return str(SIZES[0]) % {"value": int(size)}
    for pattern in SIZES[1:]:
        size /= 1024
        if size < 1024 or pattern is SIZES[-1]:
            break
    return str(pattern) % {"value": number_format(round(size, 1), 1)}


@register.filter
def percent(value) -> str:
    return f"{float(value or 0):.0f} %"


# How each status looks; what it is called is the model's (JobStatus labels, translated).
STATUS_CLASSES = {"queued": "secondary", "running": "info", "done": "success", "failed": "danger",
                  "cancelled": "warning"}


@register.filter
def status_label(status: str) -> str:
    return str(JobStatus(status).label) if status in JobStatus.values else status


@register.filter
def status_class(status: str) -> str:
    return STATUS_CLASSES.get(status, "secondary")
