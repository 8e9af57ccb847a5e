"""Admin registrations for reviewing uploads and jobs (the full review UI is its own issue)."""
from django.contrib import admin

from .models import Job, Upload


class JobInline(admin.TabularInline):
    model = Job
    fields = ("id", "status", "progress", "model", "engine", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ("original_name", "size", "duration", "content_type", "created_at")
    search_fields = ("original_name", "sha256")
    readonly_fields = ("original_name", "stored_path", "size", "content_type", "sha256", "duration",
                       "created_at")
    inlines = [JobInline]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "upload", "status", "progress", "model", "engine", "language",
                    "audio_duration", "inference_seconds", "created_at")
    list_filter = ("status", "model", "engine", "language")
    search_fields = ("id", "upload__original_name")
    readonly_fields = [f.name for f in Job._meta.fields]
