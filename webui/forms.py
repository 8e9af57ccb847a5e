"""The transcription options form of the upload page and of a job's "retry" box.

Defaults and bounds are read from `TranscribeOptions`, so the browser checks what the API checks;
the API (or `options()` here) validates again with the same schema."""
from __future__ import annotations

from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from pydantic import ValidationError

from transcription import services
from transcription.schemas import TranscribeOptions

from . import selectors

FIELDS = TranscribeOptions.model_fields


def _default(name: str) -> Any:
    return FIELDS[name].default


def _bounds(name: str) -> dict[str, float]:
    """min_value/max_value for a Django field, from the schema's Ge/Gt/Le/Lt constraints."""
    bounds: dict[str, float] = {}
    for rule in FIELDS[name].metadata:
        if isinstance(rule, (Ge, Gt)):
            bounds["min_value"] = rule.ge if isinstance(rule, Ge) else rule.gt
        elif isinstance(rule, (Le, Lt)):
            bounds["max_value"] = rule.le if isinstance(rule, Le) else rule.lt
    return bounds


def _number(name: str, label, help_text, step: str, integer: bool = False, required: bool = True):
    cls = forms.IntegerField if integer else forms.FloatField
    field = cls(label=label, help_text=help_text, required=required, initial=_default(name),
                widget=forms.NumberInput(attrs={"step": step}), **_bounds(name))
    if any(isinstance(rule, Gt) for rule in FIELDS[name].metadata):
        field.widget.attrs["data-exclusive-min"] = "true"
    return field


def _flag(name: str, label, help_text="") -> forms.BooleanField:
    return forms.BooleanField(label=label, help_text=help_text, required=False, initial=_default(name))


class OptionsForm(forms.Form):
    """Every option a person may want from the page; the API's own defaults fill the rest."""

    language = forms.ChoiceField(label=_("Language"))  # initial: WHISPER_DEFAULT_LANGUAGE
    task = forms.ChoiceField(
        label=_("Task"), initial=_default("task"),
        choices=[("transcribe", _("Transcribe")),
                 ("translate", _("Translate into English"))],
    )
    model = forms.ChoiceField(label=_("Model"))
    engine = forms.ChoiceField(label=_("Engine"), required=False)

    word_timestamps = _flag("word_timestamps", _("Word timestamps"),
                            _("Time every word, so the player can highlight it."))
    condition_on_previous_text = _flag(
        "condition_on_previous_text", _("Condition on previous text"),
        _("Give the model the text so far as context; turn off if it starts repeating itself."))
    no_speech_threshold = _number("no_speech_threshold", _("No-speech threshold"),
                                  _("0–1: above it, a window is treated as silence."), "0.05")
    hallucination_silence_threshold = _number(
        "hallucination_silence_threshold", _("Hallucination silence threshold (s)"),
        _("Skip silences longer than this when a hallucination is suspected; 0 turns it off."
          " Needs word timestamps."), "0.1")
    remove_silence = _flag("remove_silence", _("Remove leading and trailing silence"),
                           _("Timestamps still refer to the original file."))
    silence_threshold = _number("silence_threshold", _("Silence threshold (dBFS)"),
                                _("Quieter than this counts as silence."), "1")
    silence_duration = _number("silence_duration", _("Minimum silence duration (s)"),
                               _("Shorter silences are kept."), "0.1")
    beam_size = _number("beam_size", _("Beam size"),
                        _("Empty: the engine's default (CTranslate2: 5, or greedy when batched on a CPU;"
                          " MLX decodes greedily)."),
                        "1", integer=True, required=False)
    batch_size = _number("batch_size", _("Batch size"),
                         _("Windows of audio decoded together: faster on long files. 1 decodes them one after"
                           " another, each with the text so far as context. Empty: the service's default."),
                         "1", integer=True, required=False)
    vad_filter = _flag("vad_filter", _("Skip non-speech (VAD)"),
                       _("Decode only what Silero VAD finds is speech (CTranslate2 engine)."))
    hotwords = forms.CharField(
        label=_("Hotwords"), required=False, max_length=1000,
        help_text=_("Words or phrases to favour, e.g. names (CTranslate2 engine)."),
    )
    temperature = forms.CharField(
        label=_("Temperature"), initial=_default("temperature"), max_length=200,
        help_text=_("One value or a fallback list, each 0–1, e.g. 0.0,0.2,0.4."),
    )
    initial_prompt = forms.CharField(
        label=_("Initial prompt"), required=False, max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Names, terms or style to expect, e.g. “ComfyUI, Django, Huey”."),
    )

    diarize = _flag("diarize", _("Tell the speakers apart"),
                    _("Who spoke when: each turn of the transcript says whose it is, and you can name"
                      " the speakers afterwards. Needs word timestamps; runs on this server."))
    num_speakers = _number("num_speakers", _("Number of speakers"),
                           _("If you know it. Empty: estimated from the recording."), "1", integer=True,
                           required=False)
    min_speakers = _number("min_speakers", _("At least (speakers)"), _("Empty: no lower limit."), "1",
                           integer=True, required=False)
    max_speakers = _number("max_speakers", _("At most (speakers)"), _("Empty: no upper limit."), "1",
                           integer=True, required=False)

    BASIC = ("language", "task", "model")
    SPEAKERS = ("diarize", "num_speakers", "min_speakers", "max_speakers")
    ADVANCED = ("engine", "word_timestamps", "condition_on_previous_text", "no_speech_threshold",
                "hallucination_silence_threshold", "remove_silence", "silence_threshold",
                "silence_duration", "beam_size", "batch_size", "vad_filter", "hotwords", "temperature",
                "initial_prompt")
    PLANNED = ("model", "engine", "language", "task")  # services.plan checks these together

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        models, default_model, default_engine, engines = selectors.installed_models()
        self.fields["language"].choices = selectors.language_choices()
        self.fields["language"].initial = settings.WHISPER_DEFAULT_LANGUAGE  # read now: it may change
        english_only = _("English only")
        self.fields["model"].choices = [
            (m.name, m.name if m.multilingual else f"{m.name} ({english_only})") for m in models
        ] or [("", _("No model installed"))]
        self.fields["model"].initial = default_model
        self.fields["engine"].choices = [("", _("Automatic (%(engine)s)") % {"engine": default_engine})] + [
            (name, name) for name in engines
        ]
        for name, field in self.fields.items():
            attrs = field.widget.attrs
            if isinstance(field.widget, forms.Select):
                attrs["class"] = "form-select"
            elif not isinstance(field.widget, forms.CheckboxInput):
                attrs["class"] = "form-control"
            if field.help_text:
                attrs["aria-describedby"] = f"id_{name}_help"

    @classmethod
    def initial_from_job(cls, job) -> dict[str, Any]:
        """The form's initial values: what the job was asked for, so a retry starts from there."""
        initial = {name: job.options.get(name) for name in cls.BASIC + cls.SPEAKERS + cls.ADVANCED
                   if name in job.options}
        initial["model"] = job.model
        initial["engine"] = job.engine
        return {k: v for k, v in initial.items() if v is not None}

    def basic_fields(self):
        return [self[name] for name in self.BASIC]

    def advanced_fields(self):
        return [self[name] for name in self.ADVANCED]

    def speaker_count_fields(self):
        return [self[name] for name in self.SPEAKERS[1:]]

    def clean(self):
        """Every check at once, so a person fixes everything in one go: the form's own, the schema's
        for the fields that passed them, then the plan's when its fields are all valid."""
        cleaned = super().clean()
        try:
            options = TranscribeOptions(**self._valid_data())
        except ValidationError as exc:
            self.add_schema_errors(exc)
            try:  # the valid fields, with the schema's defaults for the others
                options = TranscribeOptions(**self._valid_data())
            except ValidationError:
                return cleaned
        if not any(name in self.errors for name in self.PLANNED):
            try:
                services.plan(options)
            except services.ServiceError as exc:
                self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return cleaned

    def _valid_data(self) -> dict[str, Any]:
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "") and k not in self.errors}

    def options(self) -> TranscribeOptions:
        """The cleaned form as the service's options; raises pydantic's ValidationError."""
        return TranscribeOptions(**self._valid_data())

    def add_schema_errors(self, exc: ValidationError) -> None:
        for err in exc.errors():
            name = str(err["loc"][0]) if err.get("loc") else None
            message = err.get("msg", "invalid").removeprefix("Value error, ")  # pydantic's, not the person's
            self.add_error(name if name in self.fields else None, message)

    def error_summary(self) -> list[tuple[str, str, str]]:
        """(field id or "", label or "", message) for every error, in the order of the fields."""
        rows = [("", "", message) for message in self.non_field_errors()]
        for name in self.BASIC + self.SPEAKERS + self.ADVANCED:
            for message in self.errors.get(name, []):
                rows.append((self[name].id_for_label, str(self.fields[name].label), message))
        return rows

    def advanced_errors(self) -> bool:
        return any(name in self.errors for name in self.ADVANCED)


class SpeakerNamesForm(forms.Form):
    """Names for a finished job's speakers, one box per speaker found (`display.speakers`): left
    empty, a speaker goes back to its label (or the known voice it matched)."""

    prefix = "speaker"

    def __init__(self, speakers, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for speaker in speakers:
            self.fields[speaker.id] = forms.CharField(
                label=speaker.id, required=False, max_length=services.MAX_SPEAKER_NAME, initial=speaker.given,
                # a box that wraps: a long name is seen whole, at any width (Enter still saves: job.js)
                widget=forms.Textarea(attrs={"class": "form-control speaker-name", "rows": 2,
                                             "placeholder": speaker.default, "autocomplete": "off",
                                             "aria-describedby": "rename-help"}))
        self.colours = {speaker.id: speaker.colour for speaker in speakers}

    def names(self) -> dict[str, str]:
        """Label → name of the speakers sent, as `services.rename_speakers` takes them ("" gives the
        label back); a speaker whose box was not sent keeps its name."""
        return {label: self.cleaned_data[label] for label in self.fields if self.add_prefix(label) in self.data}

    def rows(self):
        """(bound field, colour) of each speaker, in the order they first speak."""
        return [(self[label], self.colours[label]) for label in self.fields]

    def error_summary(self) -> list[tuple[str, str, str]]:
        rows = [("", "", message) for message in self.non_field_errors()]
        for label in self.fields:
            rows += [(self[label].id_for_label, label, message) for message in self.errors.get(label, [])]
        return rows


SHARE_DAYS = (1, 7, 30, 365)


def _share_choices() -> list[tuple[int, str]]:
    return [(d, ngettext("%(n)d day", "%(n)d days", d) % {"n": d}) for d in SHARE_DAYS]


class ShareForm(forms.Form):
    days = forms.TypedChoiceField(label=_("Link works for"), coerce=int, initial=7, choices=_share_choices,
                                  widget=forms.Select(attrs={"class": "form-select"}))


class TokenForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100,
                           help_text=_("What will use it, e.g. “laptop script”."),
                           widget=forms.TextInput(attrs={"class": "form-control", "autocomplete": "off"}))
    scope = forms.ChoiceField(label=_("Scope"), initial="write",
                              choices=[("write", _("Read and write: send files, cancel")),
                                       ("read", _("Read only: status, results, downloads"))],
                              widget=forms.Select(attrs={"class": "form-select"}))
    days = forms.TypedChoiceField(label=_("Expires"), coerce=int, initial=90,
                                  choices=[(30, _("in 30 days")), (90, _("in 90 days")), (365, _("in a year")),
                                           (0, _("never"))],
                                  widget=forms.Select(attrs={"class": "form-select"}))


class AccountCallbackForm(forms.Form):
    callback_url = forms.CharField(label=_("Default callback URL"), required=False, max_length=1000,
                                   help_text=_("Told (a signed POST) when a job you send without a callback_url"
                                               " ends. Empty: none."),
                                   widget=forms.URLInput(attrs={"class": "form-control",
                                                                "placeholder": "https://example.com/hooks/stt"}))
