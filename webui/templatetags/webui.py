"""Template filters for times, sizes and statuses, shared by the pages and the admin."""
from __future__ import annotations

import json

from django import template
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from transcription.uploads import human_size

register = template.Library()


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
    return _("%(value)s s") % {"value": number_format(float(seconds), 2)}


@register.filter
def filesize(n) -> str:
    return human_size(int(n)) if n is not None else "—"


@register.filter
def percent(value) -> str:
    return f"{float(value or 0):.0f} %"


@register.filter
def optionvalue(value) -> str:
    """An option's value as a person reads it (JSON spelling for booleans and null)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


STATUS_LABELS = {
    "queued": ("Queued", "secondary"), "running": ("Running", "info"), "done": ("Done", "success"),
    "failed": ("Failed", "danger"), "cancelled": ("Cancelled", "warning"),
}


@register.filter
def status_label(status: str) -> str:
    return _(STATUS_LABELS.get(status, (status, ""))[0])


@register.filter
def status_class(status: str) -> str:
    return STATUS_LABELS.get(status, ("", "secondary"))[1]
