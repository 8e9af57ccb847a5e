"""The admin: review uploads and jobs (status, progress, results rendered readably), and act on
them — retry, cancel, delete together with their files. Actions call services; nothing here
moves a job's state by itself."""
from __future__ import annotations

from typing import ClassVar

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from webui import display
from webui.templatetags.webui import clock, filesize, secs

from . import access, formats, selectors, services
from .models import (Account, ApiToken, Job, LiveSession, ModelTask, ShareLink, Upload, WebhookDelivery, WhisperModel,
                     Worker)

admin.site.site_header = _("Whisper transcription")
admin.site.site_title = _("Whisper transcription admin")
admin.site.index_title = _("Uploads and jobs")
admin.site.site_url = "/"
# The job list needs the width (status, file, duration, model, language, times beside the filters);
# the index and the breadcrumbs lead to every model as well.
admin.site.enable_nav_sidebar = False

STATUS_COLOURS = {  # background, text: each pair at least 4.5:1
    "queued": ("#565e64", "#fff"), "running": ("#0a58ca", "#fff"), "done": ("#146c43", "#fff"),
    "failed": ("#b02a37", "#fff"), "cancelled": ("#ffe69c", "#523e02"),
}
MAX_SEGMENT_ROWS = 500


def status_badge(status: str) -> str:
    bg, fg = STATUS_COLOURS.get(status, ("#565e64", "#fff"))
    label = status_label(status)
    return format_html(
        '<span class="job-status" data-status="{}" style="background:{};color:{};padding:2px 8px;'
        'border-radius:10px;font-weight:600;white-space:nowrap">{}</span>', status, bg, fg, label)


def progress_bar(job: Job) -> str:
    return format_html('<progress value="{}" max="100" style="width:6em" aria-label="{}"></progress> {} %',
                       f"{job.progress:.0f}", _("Progress"), f"{job.progress:.0f}")


def audio_player(job: Job) -> str:
    path = services.media_path(job.upload.stored_path)
    if path is None or not path.is_file():
        return _("The uploaded file is no longer stored.")
    url = reverse("webui:audio", args=[job.id])
    return format_html('<audio controls preload="none" src="{}" aria-label="{}"></audio><br>'
                       '<a href="{}?download=1">{}</a>', url, _("Uploaded audio"), url, _("Download the original"))


class ReviewOnly:
    """Rows are made by uploads and jobs, never typed in: no add form, no save buttons."""

    class Media:
        css: ClassVar[dict] = {"all": ("webui/admin.css",)}  # long file names wrap; narrow screens drop columns

    def has_add_permission(self, request, obj=None):
        return False

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False,
                         "show_save_and_add_another": False}
        return super().changeform_view(request, object_id, form_url, extra_context)


class OwnedRows:
    """Staff see the rows they own; with the view_all_jobs permission (superusers have it), every row.
    The list can then be filtered by owner."""

    owner_field = "owner"

    def get_queryset(self, request):
        return access.Actor(user=request.user).visible(super().get_queryset(request), self.owner_field)

    def get_list_filter(self, request):
        filters = tuple(super().get_list_filter(request))
        if request.user.has_perm(access.SEE_ALL):
            filters = ((self.owner_field, admin.RelatedOnlyFieldListFilter), *filters)
        return filters

    @admin.display(description=_("Owner"), ordering="owner__username")
    def owner_name(self, obj) -> str:
        return str(obj.owner) if obj.owner_id else "—"


class DeletesFiles:
    """The admin's delete (action and button) also removes the files the rows own."""

    delete_description = _("Delete selected %(verbose_name_plural)s and their files")

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            # Same name, so Django's confirmation page posts back to it; it calls delete_queryset.
            actions["delete_selected"] = (delete_selected, "delete_selected", self.delete_description)
        return actions


# --- jobs -----------------------------------------------------------------------------------------


def titled(title):
    """A field's usual list filter under a translated title (the model's field names are English)."""

    class Filter(admin.FieldListFilter):
        def __new__(cls, *args, **kwargs):
            instance = admin.FieldListFilter.create(*args, **kwargs)
            instance.title = title
            return instance

    return Filter


class StatusFilter(admin.SimpleListFilter):
    title = _("Status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(value, gettext(label)) for value, label in Job.Status.choices]

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


class SpeakerCountFilter(admin.SimpleListFilter):
    """How many speakers a job's diarization found: none (not diarized, or nobody spoke), one, several."""

    title = _("Speakers")
    parameter_name = "speakers"

    def lookups(self, request, model_admin):
        return [("none", _("None (not diarized)")), ("one", _("One")), ("several", _("More than one"))]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(Q(speaker_count__isnull=True) | Q(speaker_count=0))
        if self.value() == "one":
            return queryset.filter(speaker_count=1)
        if self.value() == "several":
            return queryset.filter(speaker_count__gt=1)
        return queryset


class JobColumns:
    """Columns shared by the job list and the jobs inline under an upload."""

    @admin.display(description=_("Job"), ordering="created_at")
    def short_id(self, job: Job):
        return str(job.pk)[:8]

    @admin.display(description=_("Status"), ordering="status")
    def status_display(self, job: Job):
        return status_badge(job.status)

    @admin.display(description=_("Status"), ordering="status")
    def status_progress(self, job: Job):
        """The status, and how far a running job has got: one column where the list is narrow."""
        if job.status == Job.Status.RUNNING:
            return format_html("{}<br>{}", status_badge(job.status), progress_bar(job))
        return status_badge(job.status)

    @admin.display(description=_("Progress"), ordering="progress")
    def progress_display(self, job: Job):
        return progress_bar(job)

    @admin.display(description=_("File"), ordering="upload__original_name")
    def file(self, job: Job):
        return job.upload.original_name

    @admin.display(description=_("Duration"), ordering="audio_duration")
    def duration(self, job: Job):
        return clock(job.duration)

    @admin.display(description=_("Model"), ordering="model")
    def model_used(self, job: Job):
        return job.model

    @admin.display(description=_("Engine"), ordering="engine")
    def engine_used(self, job: Job):
        return job.engine

    @admin.display(description=_("Model, engine"), ordering="model")
    def model_engine(self, job: Job):
        return format_html('{}<br><span class="quiet">{}</span>', self.model_used(job), self.engine_used(job))

    @admin.display(description=_("Language"), ordering="language")
    def language_code(self, job: Job):
        return job.language or "—"

    @admin.display(description=_("Created"), ordering="created_at")
    def created(self, job: Job):
        return short_datetime(job.created_at)

    @admin.display(description=_("Run time"))
    def run_time(self, job: Job):
        if not job.started_at or not job.finished_at:
            return "—"
        return secs((job.finished_at - job.started_at).total_seconds())


class JobInline(JobColumns, admin.TabularInline):
    model = Job
    fields = ("job_link", "status_display", "progress_display", "model_used", "engine_used",
              "language_code", "created", "run_time")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ("-created_at",)
    verbose_name_plural = _("Jobs on this upload")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description=_("Job"))
    def job_link(self, job: Job):
        return format_html('<a href="{}">{}</a>', reverse("admin:transcription_job_change", args=[job.pk]),
                           str(job.pk)[:8])


@admin.register(Job)
class JobAdmin(OwnedRows, ReviewOnly, DeletesFiles, JobColumns, admin.ModelAdmin):
    list_display = ("short_id", "status_progress", "file", "duration", "model_engine", "language_code",
                    "created", "run_time")
    list_display_links = ("short_id",)
    list_filter = (StatusFilter, ("model", titled(_("Model"))), ("engine", titled(_("Engine"))),
                   ("language", titled(_("Language"))), SpeakerCountFilter, ("created_at", titled(_("Created"))))
    date_hierarchy = "created_at"
    search_fields = ("id", "upload__original_name", "result__text")
    search_help_text = _("File name, job id, or words of the transcript.")
    list_select_related = ("upload", "owner")
    list_per_page = 50
    actions = ("retry_jobs", "cancel_jobs")
    fieldsets = (
        (None, {"fields": ("id", "upload_link", "status_display", "progress_display", "error_display",
                           "on_site")}),
        (_("Result"), {"fields": ("audio", "result_files", "text", "speakers_table", "segments_table")}),
        (_("Run"), {"fields": ("model", "engine", "language_display", "duration", "silence_offset", "timings",
                               "created_at", "started_at", "finished_at", "attempts", "batch", "owner_name",
                               "callback_url")}),
        (_("Options"), {"fields": ("options_table",)}),
    )
    readonly_fields = ("id", "upload_link", "status_display", "progress_display", "error_display",
                       "on_site", "audio", "result_files", "text", "speakers_table", "segments_table", "model",
                       "engine",
                       "language_display", "duration",
                       "silence_offset", "timings", "created_at", "started_at", "finished_at",
                       "attempts", "batch", "options_table", "owner_name", "callback_url")

    def get_list_display(self, request):
        """Who owns each job, under its file name (no column of its own: the list is wide enough
        already), for those who see everyone's."""
        shown = super().get_list_display(request)
        if request.user.has_perm(access.SEE_ALL):
            shown = tuple("file_owner" if name == "file" else name for name in shown)
        return shown

    @admin.display(description=_("File"), ordering="upload__original_name")
    def file_owner(self, job: Job):
        return format_html('{}<br><span class="quiet">{}</span>', job.upload.original_name,
                           job.owner.get_username() if job.owner_id else gettext("no owner"))

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name == "transcription_job_changelist":
            queryset = queryset.defer("result")  # the list shows no transcript; keep pages light
        return queryset

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The page's title and heading name the file and the status in the page's language
        # (the model's own repr is "<uuid> (done)").
        job = self.get_object(request, unquote(object_id))
        if job is not None:
            extra_context = {**(extra_context or {}),
                             "subtitle": f"{job.upload.original_name} · {status_label(job.status)}"}
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_model(self, request, obj):
        services.delete_jobs(Job.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        services.delete_jobs(queryset)

    # --- detail fields ---

    @admin.display(description=_("Upload"))
    def upload_link(self, job: Job):
        return format_html('<a href="{}">{}</a> ({})',
                           reverse("admin:transcription_upload_change", args=[job.upload_id]),
                           job.upload.original_name, filesize(job.upload.size))

    @admin.display(description=_("Error"))
    def error_display(self, job: Job):
        if not job.error:
            return "—"
        return format_html('<strong style="color:#b02a37">{}</strong><br>{} (<code>{}</code>)', job.error,
                           job.get_error_code_display(), job.error_code)

    @admin.display(description=_("Web page"))
    def on_site(self, job: Job):
        return format_html('<a href="{}">{}</a>', job.get_absolute_url(),
                           _("Open the transcript viewer"))

    @admin.display(description=_("Audio"))
    def audio(self, job: Job):
        return audio_player(job)

    @admin.display(description=_("Result files"))
    def result_files(self, job: Job):
        if job.status != Job.Status.DONE:
            return "—"
        links = format_html_join(" · ", '<a href="/job/{}/result?format={}" download>.{}</a>',
                                 ((job.pk, fmt, fmt) for fmt in formats.NAMES))
        stored = format_html("<code>{}</code>", job.result_text_path) if job.result_text_path else "—"
        return format_html("{}<br><small>{} {}</small>", links, _("Stored under MEDIA_ROOT:"), stored)

    @admin.display(description=_("Text"))
    def text(self, job: Job):
        if not job.result:
            return "—"
        return format_html('<div style="white-space:pre-wrap;max-width:60em">{}</div>', job.result.get("text", ""))

    @admin.display(description=_("Speakers"))
    def speakers_table(self, job: Job):
        rows = display.speakers(job)
        if not rows:
            return _("Not diarized.") if job.status == Job.Status.DONE else "—"
        body = format_html_join("", '<tr data-speaker="{}"><td>{}</td><td class="extra">{}</td><td class="extra">{}</td>'
                                '<td class="num">{}</td><td class="num">{} %</td><td class="num extra">{}</td></tr>',
                                ((row.id, speaker_tag(row), row.id, row.given or "—", secs(row.seconds), row.share,
                                  row.words) for row in rows))
        return format_html(
            '<table class="speakers"><thead><tr><th>{}</th><th class="extra">{}</th><th class="extra">{}</th>'
            '<th class="num">{}</th><th class="num">{}</th><th class="num extra">{}</th></tr></thead><tbody>{}</tbody>'
            '</table>'
            '<p class="help"><a href="{}#speakers-card">{}</a></p>',
            _("Shown as"), _("Label"), _("Name given"), _("Speaking time"), _("Share"), _("Words"), body,
            job.get_absolute_url(), _("Rename the speakers on the job's page"))

    @admin.display(description=_("Segments"))
    def segments_table(self, job: Job):
        segments = (job.result or {}).get("segments") or []
        if not segments:
            return "—"
        who = {row.id: row for row in display.speakers(job)}
        rows = format_html_join(
            "", '<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td class="extra">{}</td><td class="extra">{}</td>'
            '<td class="extra">{}</td></tr>',
            ((s.get("id", i), _decimal(s["start"], 2), _decimal(s["end"], 2),
              speaker_tag(who[s["speaker"]]) if s.get("speaker") in who else "", s.get("text", ""),
              len(s.get("words") or []) or "—", _num(s.get("avg_logprob")), _num(s.get("no_speech_prob")))
             for i, s in enumerate(segments[:MAX_SEGMENT_ROWS])),
        )
        more = ""
        if len(segments) > MAX_SEGMENT_ROWS:
            more = format_html("<p>{}</p>", _("%(shown)d of %(total)d segments shown; download the JSON for all.")
                               % {"shown": MAX_SEGMENT_ROWS, "total": len(segments)})
        return format_html(
            '<table class="segments"><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th class="extra">{}</th>'
            '<th class="extra">{}</th><th class="extra">{}</th></tr></thead><tbody>{}</tbody></table>{}',
            _("Start (s)"), _("End (s)"), _("Text"), _("Words"), _("Avg. log-prob"), _("No-speech prob."),
            rows, more)

    @admin.display(description=_("Language"))
    def language_display(self, job: Job):
        return display.language_summary(job)

    @admin.display(description=_("Timings"))
    def timings(self, job: Job):
        rtf = job.rtf
        return format_html("{}: {} · {}: {} · {}: {}",
                           _("conversion"), secs(job.conversion_seconds),
                           _("inference"), secs(job.inference_seconds),
                           _("real-time factor"), _decimal(rtf, 3) if rtf is not None else "—")

    @admin.display(description=_("Options"))
    def options_table(self, job: Job):
        rows = format_html_join("", '<tr data-option="{}"><td>{}</td><td>{}</td></tr>',
                                ((row.name, row.label, row.value) for row in display.option_rows(job)))
        return format_html('<table class="options"><tbody>{}</tbody></table>', rows)

    # --- actions ---

    @admin.action(description=_("Retry selected jobs with the same options"))
    def retry_jobs(self, request, queryset):
        queued = 0
        for job in queryset.select_related("upload"):
            try:
                services.retry(job)
                queued += 1
            except services.ServiceError as exc:
                self.message_user(request, f"{job.upload.original_name}: {exc.message}", messages.ERROR)
        if queued:
            self.message_user(request, ngettext("%d job queued again.", "%d jobs queued again.", queued) % queued,
                              messages.SUCCESS)

    @admin.action(description=_("Cancel selected jobs (queued or running)"))
    def cancel_jobs(self, request, queryset):
        cancelled = skipped = 0
        for job in queryset:
            try:
                services.cancel(job)
                cancelled += 1
            except services.ServiceError:
                skipped += 1
        if cancelled:
            self.message_user(request, ngettext("%d job cancelled.", "%d jobs cancelled.", cancelled) % cancelled,
                              messages.SUCCESS)
        if skipped:
            self.message_user(request, ngettext("%d job was already finished; left as it was.",
                                                "%d jobs were already finished; left as they were.", skipped)
                              % skipped, messages.WARNING)


def speaker_tag(row: display.SpeakerRow) -> str:
    """A speaker's name on its colour (white text on each colour: readable in light and dark themes)."""
    return format_html('<span class="speaker-tag" style="background:{}">{}</span> ', row.colour, row.name)


def _num(value) -> str:
    return "—" if value is None else _decimal(value, 3)


def _decimal(value: float, places: int) -> str:
    """In the page's language (0,091 in Russian), rounded (number_format alone cuts off)."""
    return number_format(round(value, places), places)


def short_datetime(value) -> str:
    """A compact date and time in the page's language (29.11.2026 03:34, 11/29/2026 3:34 a.m.)."""
    return date_format(timezone.localtime(value), "SHORT_DATETIME_FORMAT") if value else "—"


def status_label(status: str) -> str:
    return gettext(Job.Status(status).label) if status in Job.Status.values else status


# --- uploads --------------------------------------------------------------------------------------


@admin.register(Upload)
class UploadAdmin(OwnedRows, ReviewOnly, DeletesFiles, admin.ModelAdmin):
    list_display = ("file_name", "size_display", "duration_display", "job_count", "last_status", "owner_name",
                    "created")
    list_filter = (("created_at", titled(_("Created"))), ("content_type", titled(_("Content type"))))
    date_hierarchy = "created_at"
    search_fields = ("original_name", "sha256", "jobs__id", "jobs__result__text")
    search_help_text = _("File name, SHA-256, job id, or words of a transcript.")
    fields = ("original_name", "source_url", "audio", "stored_path", "size_display", "duration_display",
              "content_type", "sha256", "created_at")
    readonly_fields = fields
    inlines = (JobInline,)

    def get_queryset(self, request):
        latest = Job.objects.filter(upload=OuterRef("pk")).order_by("-created_at")
        return super().get_queryset(request).annotate(
            _jobs=Count("jobs"), _last=Max("jobs__created_at"), _last_status=Subquery(latest.values("status")[:1]))

    def delete_model(self, request, obj):
        services.delete_uploads([obj])

    def delete_queryset(self, request, queryset):
        services.delete_uploads(queryset)

    @admin.display(description=_("File"), ordering="original_name")
    def file_name(self, upload: Upload):
        return upload.original_name

    @admin.display(description=_("Created"), ordering="created_at")
    def created(self, upload: Upload):
        return short_datetime(upload.created_at)

    @admin.display(description=_("Size"), ordering="size")
    def size_display(self, upload: Upload):
        return filesize(upload.size)

    @admin.display(description=_("Duration"), ordering="duration")
    def duration_display(self, upload: Upload):
        return clock(upload.duration)

    @admin.display(description=_("Jobs"), ordering="_jobs")
    def job_count(self, upload: Upload):
        return upload._jobs

    @admin.display(description=_("Latest job"), ordering="_last")
    def last_status(self, upload: Upload):
        return status_badge(upload._last_status) if upload._last_status else "—"

    @admin.display(description=_("Audio"))
    def audio(self, upload: Upload):
        job = upload.jobs.order_by("-created_at").first()
        return audio_player(job) if job else "—"


@admin.register(Worker)
class WorkerAdmin(ReviewOnly, admin.ModelAdmin):
    """The queue consumers that announced themselves: alive or gone, and what each one runs."""

    list_display = ("name", "alive", "threads", "queue", "started", "seen", "running", "models_loaded")
    readonly_fields = ("name", "host", "pid", "threads", "queue", "started_at", "seen_at", "models_loaded")
    search_fields = ("name", "host")

    def has_change_permission(self, request, obj=None):
        return request.method in ("GET", "HEAD") and super().has_change_permission(request, obj)

    @admin.display(description=_("Alive"), boolean=True)
    def alive(self, worker: Worker) -> bool:
        return worker.is_alive

    @admin.display(description=_("Started"), ordering="started_at")
    def started(self, worker: Worker):
        return short_datetime(worker.started_at)

    @admin.display(description=_("Last heartbeat"), ordering="seen_at")
    def seen(self, worker: Worker):
        return short_datetime(worker.seen_at)

    @admin.display(description=_("Loaded models"))
    def models_loaded(self, worker: Worker):
        return format_html_join(", ", "{} ({})", ((m.name, m.engine) for m in worker.loaded)) or "—"

    @admin.display(description=_("Running jobs"))
    def running(self, worker: Worker):
        jobs = selectors.running_jobs(worker)
        return format_html_join(", ", '<a href="{}">{}</a>', (
            (reverse("admin:transcription_job_change", args=[job.pk]), job.upload.original_name) for job in jobs
        )) or "—"


@admin.register(LiveSession)
class LiveSessionAdmin(OwnedRows, ReviewOnly, admin.ModelAdmin):
    """Live sessions: who, with what settings, how each ended, and the job its recording became."""

    list_display = ("short_id", "status", "created", "audio", "model", "owner_name", "client", "ended_how",
                    "job_link")
    list_filter = ("status", "model")
    search_fields = ("id", "client", "text")
    readonly_fields = ("id", "status", "client", "model", "engine", "options", "created_at", "started_at",
                       "ended_at", "heartbeat_at", "worker", "audio_seconds", "text", "end_reason", "end_code",
                       "job_link")
    fields = readonly_fields

    def has_change_permission(self, request, obj=None):
        return request.method in ("GET", "HEAD") and super().has_change_permission(request, obj)

    @admin.display(description=_("Id"), ordering="id")
    def short_id(self, session: LiveSession) -> str:
        return str(session.id)[:8]

    @admin.display(description=_("Created"), ordering="created_at")
    def created(self, session: LiveSession):
        return short_datetime(session.created_at)

    @admin.display(description=_("Audio"), ordering="audio_seconds")
    def audio(self, session: LiveSession) -> str:
        return f"{session.audio_seconds:.1f} s"

    @admin.display(description=_("How it ended"))
    def ended_how(self, session: LiveSession) -> str:
        return f"{session.end_reason} ({session.end_code})" if session.end_code else "—"

    @admin.display(description=_("Job"))
    def job_link(self, session: LiveSession):
        if session.job_id is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:transcription_job_change", args=[session.job_id]),
                           str(session.job_id)[:8])


# --- Whisper models: install, remove, preload ------------------------------------------------------


@admin.register(WhisperModel)
class WhisperModelAdmin(admin.ModelAdmin):
    """The Models page: every catalogue entry with its state (installed for which engines, size,
    loaded in which worker, last used), Install / Remove / Preload, and the recent model tasks.
    Staff with the manage_models permission only; the work is done by a worker (services.modeltasks)."""

    class Media:
        css: ClassVar[dict] = {"all": ("webui/admin.css",)}

    def has_view_permission(self, request, obj=None):
        return access.Actor(user=request.user).manages_models

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        def view(fn):
            return self.admin_site.admin_view(fn)

        return [
            path("", view(self.changelist_view), name="transcription_whispermodel_changelist"),
            path("<str:name>/install/", view(self.install_view), name="transcription_whispermodel_install"),
            path("<str:name>/remove/", view(self.remove_view), name="transcription_whispermodel_remove"),
            path("<str:name>/preload/", view(self.preload_view), name="transcription_whispermodel_preload"),
        ]

    def _allowed(self, request) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def _context(self, request, title: str, **extra) -> dict:
        return {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title,
                "app_label": self.model._meta.app_label, **extra}

    def changelist_view(self, request, extra_context=None):
        self._allowed(request)
        states = services.model_states()
        tasks = services.recent_tasks()
        return TemplateResponse(request, "admin/transcription/whispermodel/models.html", self._context(
            request, gettext("Whisper models"), rows=[self._row(state) for state in states],
            tasks=[self._task_row(task) for task in tasks], sources=ModelTask.Source.choices,
            busy=any(task.status in (ModelTask.Status.QUEUED, ModelTask.Status.RUNNING) for task in tasks)))

    @staticmethod
    def _row(state) -> dict:
        loaded = [format_html("{} ({}), {}", holder.worker, holder.engine,
                              gettext("last used %(when)s") % {"when": short_datetime(holder.last_used)})
                  for holder in state.loaded_in]
        return {"state": state, "engines": ", ".join(state.engines) or "—",
                "size": filesize(state.size_bytes) if state.installed else "—",
                "loaded": loaded, "last_used": short_datetime(state.last_used),
                "pending": WhisperModelAdmin._task_row(state.pending) if state.pending else None,
                "default_source": "package" if state.package else "hub"}

    @staticmethod
    def _task_row(task: ModelTask) -> dict:
        return {"task": task, "status": status_badge(task.status), "step": gettext(task.step) if task.step else "",
                "progress": f"{task.progress:.0f}", "created": short_datetime(task.created_at),
                "action": task.get_action_display(), "source": task.get_source_display() if task.source else "",
                "requested_by": str(task.requested_by) if task.requested_by_id else gettext("service token")}

    def _back(self):
        return redirect("admin:transcription_whispermodel_changelist")

    def _ask(self, request, ask, done_message: str):
        """Run one request_* service on a POST, and say how it went at the top of the page."""
        if request.method != "POST":
            return self._back()
        try:
            ask()
        except services.ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, done_message, messages.SUCCESS)
        return self._back()

    def install_view(self, request, name: str):
        self._allowed(request)
        return self._ask(request, lambda: services.request_install(
            name, request.POST.get("source", ""), request.POST.get("path", ""), request.user),
            gettext("Installing %(name)s: a worker does it; its progress is below.") % {"name": name})

    def preload_view(self, request, name: str):
        self._allowed(request)
        return self._ask(request, lambda: services.request_preload(name, request.user),
                         gettext("Loading %(name)s into a worker's memory.") % {"name": name})

    def remove_view(self, request, name: str):
        """GET: the confirmation (or why it cannot be removed); POST: queue the removal."""
        self._allowed(request)
        if request.method == "POST":
            return self._ask(request, lambda: services.request_removal(name, request.user),
                             gettext("Removing %(name)s.") % {"name": name})
        try:
            name = services.known_model(name)
        except services.ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return self._back()
        state = next(s for s in services.model_states() if s.name == name)
        return TemplateResponse(request, "admin/transcription/whispermodel/remove.html", self._context(
            request, gettext("Remove %(name)s?") % {"name": name}, state=state, size=filesize(state.size_bytes),
            refusal=services.removal_refused(name)))


# --- people: accounts and quotas, API tokens, share links ------------------------------------------


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    """Each user's quotas and what they have used of them, and their webhook settings."""

    list_display = ("user", "audio_today", "audio_quota", "queued", "queued_quota", "callback_url")
    search_fields = ("user__username", "user__email")
    fields = ("user", "audio_hours_per_day", "max_queued_jobs", "audio_today", "queued", "callback_url",
              "secret_shown")
    readonly_fields = ("user", "audio_today", "queued", "secret_shown")

    # Only superusers manage other people's accounts: another's callback address would receive
    # their transcripts. Staff see and change their own.
    def get_queryset(self, request):
        rows = super().get_queryset(request)
        return rows if request.user.is_superuser else rows.filter(user=request.user)

    def get_readonly_fields(self, request, obj=None):
        if request.user.is_superuser:
            return self.readonly_fields
        return (*self.readonly_fields, "audio_hours_per_day", "max_queued_jobs")  # no raising one's own quota

    @admin.display(description=_("webhook secret"))
    def secret_shown(self, account: Account) -> str:
        """Its first characters only: the owner reads it whole on their account page."""
        return account.webhook_secret[:4] + "…"

    def has_add_permission(self, request):
        return False  # every user has one (made when the list is opened)

    def changelist_view(self, request, extra_context=None):
        from django.contrib.auth import get_user_model

        missing = get_user_model().objects.filter(transcription_account__isnull=True)
        Account.objects.bulk_create([Account(user=u) for u in missing], ignore_conflicts=True)
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("Audio in the last 24 h"))
    def audio_today(self, account: Account) -> str:
        return f"{account.audio_seconds_today() / 3600:.2f} h"

    @admin.display(description=_("Audio quota"))
    def audio_quota(self, account: Account) -> str:
        limit = account.audio_limit_seconds
        return f"{limit / 3600:g} h" if limit is not None else gettext("none")

    @admin.display(description=_("Waiting or running"))
    def queued(self, account: Account) -> int:
        return account.queued_now()

    @admin.display(description=_("Queued jobs quota"))
    def queued_quota(self, account: Account) -> str:
        limit = account.queued_limit
        return str(limit) if limit is not None else gettext("none")


class KeyColumns:
    @admin.display(description=_("State"))
    def state_display(self, obj) -> str:
        return {"active": gettext("active"), "expired": gettext("expired"), "revoked": gettext("revoked")}[obj.state]

    @admin.action(description=_("Revoke the selected"))
    def revoke(self, request, queryset):
        n = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, ngettext("%(n)d revoked.", "%(n)d revoked.", n) % {"n": n})


@admin.register(ApiToken)
class ApiTokenAdmin(KeyColumns, admin.ModelAdmin):
    """Personal API tokens: made here for a user (the token is shown once, after saving), listed by
    their first characters, revoked with the action."""

    list_display = ("name", "user", "prefix", "scope", "created_at", "expires_at", "last_used_at", "state_display")
    list_filter = ("scope",)
    search_fields = ("name", "prefix", "user__username")
    actions = ("revoke",)
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")

    def get_fields(self, request, obj=None):
        return ("user", "name", "scope", "expires_at") if obj is None else (
            "user", "name", "scope", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at")

    # A token acts as its user: only superusers make, see or revoke other people's.
    def get_queryset(self, request):
        rows = super().get_queryset(request)
        return rows if request.user.is_superuser else rows.filter(user=request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user" and not request.user.is_superuser:
            kwargs["queryset"] = get_user_model().objects.filter(pk=request.user.pk)
            kwargs["initial"] = request.user.pk
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not change and not request.user.is_superuser and obj.user_id != request.user.pk:
            raise PermissionDenied
        self._save_and_show(request, obj, form, change)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is None else (*self.readonly_fields, "user", "scope")

    def _save_and_show(self, request, obj, form, change):
        key = obj.new_key() if not change else None
        super().save_model(request, obj, form, change)
        if key:
            self.message_user(request, format_html(
                "{} <code class=\"new-token\">{}</code> {}", gettext("The new token:"), key,
                gettext("Copy it now: it is stored only as a hash and will not be shown again.")),
                messages.WARNING)


@admin.register(ShareLink)
class ShareLinkAdmin(KeyColumns, admin.ModelAdmin):
    """Read-only links to single jobs: who made them, until when, how often opened; revoke here."""

    list_display = ("prefix", "job_link", "created_by", "created_at", "expires_at", "views", "last_used_at",
                    "state_display")
    actions = ("revoke",)
    fields = ("prefix", "job_link", "created_by", "created_at", "expires_at", "views", "last_used_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # made on the job's page, by its owner

    def get_queryset(self, request):
        return access.Actor(user=request.user).visible(super().get_queryset(request), "job__owner")

    @admin.display(description=_("Job"))
    def job_link(self, link: ShareLink):
        return format_html('<a href="{}">{}</a>', reverse("admin:transcription_job_change", args=[link.job_id]),
                           str(link.job_id)[:8])


# --- webhooks --------------------------------------------------------------------------------------


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(OwnedRows, ReviewOnly, admin.ModelAdmin):
    """Each attempt to send a callback: where, what the receiver answered, and what happens next.
    Rows are read and deleted, never edited."""

    list_display = ("sent", "event", "subject_link", "url", "attempt", "outcome", "status_code", "duration_ms")
    list_filter = ("outcome", "event")
    search_fields = ("url", "event_id")
    list_select_related = ("owner",)
    readonly_fields = ("event_id", "event", "subject_link", "owner", "url", "attempt", "outcome", "status_code",
                       "answer", "error", "sent_at", "duration_ms", "next_attempt_at")
    fields = readonly_fields

    def has_change_permission(self, request, obj=None):
        return request.method in ("GET", "HEAD") and super().has_change_permission(request, obj)

    @admin.display(description=_("Sent"), ordering="sent_at")
    def sent(self, delivery: WebhookDelivery):
        return short_datetime(delivery.sent_at)

    @admin.display(description=_("Job or batch"))
    def subject_link(self, delivery: WebhookDelivery):
        if delivery.job_id is not None:
            return format_html('<a href="{}">{}</a>', reverse("admin:transcription_job_change",
                                                              args=[delivery.job_id]), str(delivery.job_id)[:8])
        if delivery.batch_id is not None:  # batches have no admin page: their API answer
            return format_html('<a href="/batch/{}">{} {}</a>', delivery.batch_id, gettext("batch"),
                               str(delivery.batch_id)[:8])
        return "—"
