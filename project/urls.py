from django.contrib import admin
from django.urls import include, path

from transcription import metrics
from transcription.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics.view, name="metrics"),
    path("", include("webui.urls")),
    path("", api.urls),
]
