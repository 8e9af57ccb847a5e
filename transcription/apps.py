from pathlib import Path

from django.apps import AppConfig
from django.conf import settings
from django.utils.translation import gettext_lazy as _


class TranscriptionConfig(AppConfig):
    name = "transcription"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = _("Transcription")

    def ready(self) -> None:
        # The folders the service writes in; made when it starts, not when settings are read.
        for folder in (settings.DATA_DIR, settings.FILE_UPLOAD_TEMP_DIR, settings.STATIC_ROOT, settings.MEDIA_ROOT):
            Path(folder).mkdir(parents=True, exist_ok=True)
        from . import metrics, models, webhooks

        models.job_ended.connect(webhooks.on_job_ended, dispatch_uid="transcription.webhooks")
        models.job_ended.connect(metrics.job_ended, dispatch_uid="transcription.metrics")
