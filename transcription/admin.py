"""The admin: review uploads and jobs (status, progress, results rendered readably), and act on
them — retry, cancel, delete together with their files. Actions call services; nothing here
moves a job's state by itself."""
from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.db.models import Count, Max, OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from . import services
from .models import Job, Upload
from .uploads import human_size


admin.site.site_header = _("Whisper transcription")
admin.site.site_title = _("Whisper transcription admin")
admin.site.index_title = _("Uploads and jobs")
admin.site.site_url = "/"

STATUS_COLOURS = {  # background, text: each pair at least 4.5:1
    "queued": ("#565e64", "#fff"), "running": ("#0a58ca", "#fff"), "done": ("#146c43", "#fff"),
    "failed": ("#b02a37", "#fff"), "cancelled": ("#ffe69c", "#523e02"),
}
RESULT_FORMATS = ("txt", "srt", "vtt", "tsv", "json")
MAX_SEGMENT_ROWS = 500


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def status_badge(status: str) -> str:
    bg, fg = STATUS_COLOURS.get(status, ("#565e64", "#fff"))
    label = gettext(Job.Status(status).label) if status in Job.Status.values else status
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

    def has_add_permission(self, request, obj=None):
        return False

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False,
                         "show_save_and_add_another": False}
        return super().changeform_view(request, object_id, form_url, extra_context)


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


class JobColumns:
    """Columns shared by the job list and the jobs inline under an upload."""

    @admin.display(description=_("Job"), ordering="created_at")
    def short_id(self, job: Job):
        return str(job.pk)[:8]

    @admin.display(description=_("Status"), ordering="status")
    def status_display(self, job: Job):
        return status_badge(job.status)

    @admin.display(description=_("Progress"), ordering="progress")
    def progress_display(self, job: Job):
        return progress_bar(job)

    @admin.display(description=_("File"), ordering="upload__original_name")
    def file(self, job: Job):
        return job.upload.original_name

    @admin.display(description=_("Duration"), ordering="audio_duration")
    def duration(self, job: Job):
        return _clock(job.audio_duration if job.audio_duration is not None else job.upload.duration)

    @admin.display(description=_("Model"), ordering="model")
    def model_used(self, job: Job):
        return job.model or job.requested_model

    @admin.display(description=_("Engine"), ordering="engine")
    def engine_used(self, job: Job):
        return job.engine or job.requested_engine

    @admin.display(description=_("Language"), ordering="language")
    def language_code(self, job: Job):
        return job.language or "—"

    @admin.display(description=_("Created"), ordering="created_at")
    def created(self, job: Job):
        return job.created_at

    @admin.display(description=_("Run time"))
    def run_time(self, job: Job):
        if not job.started_at or not job.finished_at:
            return "—"
        return f"{(job.finished_at - job.started_at).total_seconds():.1f} s"


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
class JobAdmin(ReviewOnly, DeletesFiles, JobColumns, admin.ModelAdmin):
    list_display = ("short_id", "status_display", "progress_display", "file", "duration", "model_used",
                    "engine_used", "language_code", "created", "run_time")
    list_display_links = ("short_id",)
    list_filter = (StatusFilter, ("model", titled(_("Model"))), ("engine", titled(_("Engine"))),
                   ("language", titled(_("Language"))), ("created_at", titled(_("Created"))))
    date_hierarchy = "created_at"
    search_fields = ("id", "upload__original_name", "result__text")
    search_help_text = _("File name, job id, or words of the transcript.")
    list_select_related = ("upload",)
    list_per_page = 50
    actions = ("retry_jobs", "cancel_jobs")
    fieldsets = (
        (None, {"fields": ("id", "upload_link", "status_display", "progress_display", "error_display",
                           "on_site")}),
        (_("Result"), {"fields": ("audio", "result_files", "text", "segments_table")}),
        (_("Run"), {"fields": ("model", "engine", "requested_model", "requested_engine",
                               "language_display", "duration", "silence_offset", "timings",
                               "created_at", "started_at", "finished_at", "attempts", "batch")}),
        (_("Options"), {"fields": ("options_table",)}),
    )
    readonly_fields = ("id", "upload_link", "status_display", "progress_display", "error_display",
                       "on_site", "audio", "result_files", "text", "segments_table", "model", "engine",
                       "requested_model", "requested_engine", "language_display", "duration",
                       "silence_offset", "timings", "created_at", "started_at", "finished_at",
                       "attempts", "batch", "options_table")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name == "transcription_job_changelist":
            queryset = queryset.defer("result")  # the list shows no transcript; keep pages light
        return queryset

    def view_on_site(self, job: Job):
        return reverse("webui:job", args=[job.pk])

    def delete_model(self, request, obj):
        services.delete_jobs(Job.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        services.delete_jobs(queryset)

    # --- detail fields ---

    @admin.display(description=_("Upload"))
    def upload_link(self, job: Job):
        return format_html('<a href="{}">{}</a> ({})',
                           reverse("admin:transcription_upload_change", args=[job.upload_id]),
                           job.upload.original_name, human_size(job.upload.size))

    @admin.display(description=_("Error"))
    def error_display(self, job: Job):
        if not job.error:
            return "—"
        return format_html('<strong style="color:#b02a37">{}</strong> <code>{}</code>', job.error,
                           job.error_code)

    @admin.display(description=_("Web page"))
    def on_site(self, job: Job):
        return format_html('<a href="{}">{}</a>', reverse("webui:job", args=[job.pk]),
                           _("Open the transcript viewer"))

    @admin.display(description=_("Audio"))
    def audio(self, job: Job):
        return audio_player(job)

    @admin.display(description=_("Result files"))
    def result_files(self, job: Job):
        if job.status != Job.Status.DONE:
            return "—"
        links = format_html_join(" · ", '<a href="/job/{}/result?format={}" download>.{}</a>',
                                 ((job.pk, fmt, fmt) for fmt in RESULT_FORMATS))
        stored = format_html_join(", ", "<code>{}</code>",
                                  ((p,) for p in (job.result_json_path, job.result_text_path) if p))
        return format_html("{}<br><small>{} {}</small>", links, _("Stored under MEDIA_ROOT:"), stored)

    @admin.display(description=_("Text"))
    def text(self, job: Job):
        if not job.result:
            return "—"
        return format_html('<div style="white-space:pre-wrap;max-width:60em">{}</div>', job.result.get("text", ""))

    @admin.display(description=_("Segments"))
    def segments_table(self, job: Job):
        segments = (job.result or {}).get("segments") or []
        if not segments:
            return "—"
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((s.get("id", i), f"{s['start']:.2f}", f"{s['end']:.2f}", s.get("text", ""),
              len(s.get("words") or []) or "—", _num(s.get("avg_logprob")), _num(s.get("no_speech_prob")))
             for i, s in enumerate(segments[:MAX_SEGMENT_ROWS])),
        )
        more = ""
        if len(segments) > MAX_SEGMENT_ROWS:
            more = format_html("<p>{}</p>", _("%(shown)d of %(total)d segments shown; download the JSON for all.")
                               % {"shown": MAX_SEGMENT_ROWS, "total": len(segments)})
        return format_html(
            '<table class="segments"><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
            "<th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>{}",
            _("Start (s)"), _("End (s)"), _("Text"), _("Words"), _("Avg. log-prob"), _("No-speech prob."),
            rows, more)

    @admin.display(description=_("Language"))
    def language_display(self, job: Job):
        if not job.language:
            return "—"
        if job.language_probability is None:
            return job.language
        return f"{job.language} ({job.language_probability:.0%})"

    @admin.display(description=_("Timings"))
    def timings(self, job: Job):
        duration = job.audio_duration
        rtf = job.inference_seconds / duration if job.inference_seconds and duration else None
        return format_html("{}: {} · {}: {} · {}: {}",
                           _("conversion"), _seconds(job.conversion_seconds),
                           _("inference"), _seconds(job.inference_seconds),
                           _("real-time factor"), f"{rtf:.3f}" if rtf is not None else "—")

    @admin.display(description=_("Options"))
    def options_table(self, job: Job):
        options = (job.result or {}).get("options") or job.options
        rows = format_html_join("", "<tr><td><code>{}</code></td><td>{}</td></tr>",
                                sorted((k, "—" if v is None else v) for k, v in options.items()))
        return format_html("<table><tbody>{}</tbody></table>", rows)

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


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def _seconds(value) -> str:
    return "—" if value is None else f"{value:.2f} s"


# --- uploads --------------------------------------------------------------------------------------


@admin.register(Upload)
class UploadAdmin(ReviewOnly, DeletesFiles, admin.ModelAdmin):
    list_display = ("file_name", "size_display", "duration_display", "job_count", "last_status", "created")
    list_filter = (("created_at", titled(_("Created"))), ("content_type", titled(_("Content type"))))
    date_hierarchy = "created_at"
    search_fields = ("original_name", "sha256", "jobs__id", "jobs__result__text")
    search_help_text = _("File name, SHA-256, job id, or words of a transcript.")
    fields = ("original_name", "audio", "stored_path", "size_display", "duration_display", "content_type",
              "sha256", "created_at")
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
        return upload.created_at

    @admin.display(description=_("Size"), ordering="size")
    def size_display(self, upload: Upload):
        return human_size(upload.size)

    @admin.display(description=_("Duration"), ordering="duration")
    def duration_display(self, upload: Upload):
        return _clock(upload.duration)

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
