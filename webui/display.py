"""How a job's language and options read for people, on the job page and in the admin alike:
labels from the options form, values in the page's language, nothing shown as `null`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.formats import localize
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from transcription.languages import AUTO
from transcription.models import Job
from transcription.schemas import parse_temperature

from .forms import OptionsForm
from .languages import language_name

# Options the API takes that the page's form does not offer.
OTHER_LABELS = {
    "best_of": gettext_lazy("Best of (candidates when sampling)"),
    "patience": gettext_lazy("Patience (beam search)"),
    "length_penalty": gettext_lazy("Length penalty"),
    "suppress_tokens": gettext_lazy("Suppressed tokens"),
    "no_timestamps": gettext_lazy("Without timestamps"),
    "compression_ratio_threshold": gettext_lazy("Compression ratio threshold"),
    "logprob_threshold": gettext_lazy("Log-probability threshold"),
}
# Left empty, these are the engine's to choose (README: "engine default").
ENGINE_DEFAULTS = {"beam_size", "best_of", "patience", "length_penalty", "batch_size"}
ORDER = (*OptionsForm.BASIC, *OptionsForm.ADVANCED, *OTHER_LABELS)


def language_summary(job: Job) -> str:
    """"Russian (ru) · chosen", "English (en) · probability 97 %", or what will happen."""
    code = job.language or (job.spec.decode.language or "")
    if not code:
        return _("Detect automatically") if job.status in (Job.Status.QUEUED, Job.Status.RUNNING) else "—"
    name = f"{language_name(code)} ({code})"
    if job.language_chosen:
        return _("%(language)s · chosen") % {"language": name}
    if job.language_probability is not None:
        return _("%(language)s · probability %(percent)s %%") % {
            "language": name, "percent": round(job.language_probability * 100)}
    return _("%(language)s · detected") % {"language": name}


@dataclass(frozen=True)
class OptionRow:
    name: str
    label: str
    value: str


def option_rows(job: Job) -> list[OptionRow]:
    """Every option the job ran with (or was asked for), labelled and readable, in the form's order."""
    options: dict[str, Any] = (job.result or {}).get("options") or job.options
    names = sorted(options, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return [OptionRow(name, _label(name), option_value(name, options[name])) for name in names]


def _label(name: str) -> str:
    field = OptionsForm.base_fields.get(name)
    return str(field.label if field else OTHER_LABELS.get(name, name))


def option_value(name: str, value: Any) -> str:
    if value is None or value == "":
        return _("engine default") if name in ENGINE_DEFAULTS else "—"
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if name == "language":
        return _("Detect automatically") if value == AUTO else f"{language_name(value)} ({value})"
    if name == "task":
        return _("Translate into English") if value == "translate" else _("Transcribe")
    if name == "temperature":
        try:
            return list_of(parse_temperature(value))
        except ValueError:
            return str(value)
    if isinstance(value, (int, float)):
        return localize(value)
    return str(value)


def list_of(numbers) -> str:
    """0.0, 0.2, 0.4 in English; 0,0; 0,2; 0,4 where the decimal mark is a comma."""
    return pgettext("between numbers in a list", ", ").join(localize(n) for n in numbers)
