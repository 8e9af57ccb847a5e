"""How a job's language, options and speakers read for people, on the job page and in the admin
alike: labels from the options form, values in the page's language, nothing shown as `null`, each
speaker under the name people gave it and in a colour of its own."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.formats import localize
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from transcription.languages import AUTO
from transcription.models import Job
from transcription.result import Speaker, speaker_names
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
ORDER = (*OptionsForm.BASIC, *OptionsForm.SPEAKERS, *OptionsForm.ADVANCED, *OTHER_LABELS)


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


# A colour per speaker, in the order they first speak (then again from the start): each carries
# white text at 5.4:1 or more (WCAG AA) and keeps it on a light or a dark page alike.
SPEAKER_COLOURS = ("#1d5fb4", "#a3136f", "#1e7a34", "#a14a00", "#6f42c1", "#0f6e74", "#b3261e", "#4d5a66")


@dataclass(frozen=True)
class SpeakerRow:
    id: str  # the label: SPEAKER_1
    name: str  # what people read: the name given, else the known voice it matched, else the label
    given: str  # the name people gave it ("" when none)
    default: str  # what it is called without one
    seconds: float
    words: int
    share: int  # percent of all speaking time
    colour: str


def speakers(job: Job) -> list[SpeakerRow]:
    """A finished, diarized job's speakers in the order they first speak; [] for any other job."""
    if job.status != Job.Status.DONE or not job.result or not job.result.get("speakers"):
        return []
    found = [Speaker.model_validate(s) for s in job.result["speakers"]]
    names = speaker_names(job.result, job.speaker_names)
    total = sum(s.seconds for s in found) or 1.0
    return [SpeakerRow(s.id, names[s.id], (job.speaker_names or {}).get(s.id, ""), s.name or s.id, s.seconds,
                       s.words, round(100 * s.seconds / total), SPEAKER_COLOURS[i % len(SPEAKER_COLOURS)])
            for i, s in enumerate(found)]


def labelled_segments(segments: list[dict], rows: list[SpeakerRow]) -> list[dict]:
    """The segments, each with `who` (its SpeakerRow, or None) and `turn` (true where a new speaker
    starts, where the page shows the name)."""
    by_id = {row.id: row for row in rows}
    out, previous = [], None
    for seg in segments:
        who = by_id.get(seg.get("speaker"))
        out.append({**seg, "who": who, "turn": who is not None and who is not previous})
        previous = who
    return out
