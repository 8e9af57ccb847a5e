from django.contrib import admin
from django.urls import include, path

from transcription.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("webui.urls")),
    path("", api.urls),
]
