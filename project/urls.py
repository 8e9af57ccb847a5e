from django.contrib import admin
from django.urls import path

from transcription.api import api
from webui import views

urlpatterns = [
    path("", views.index, name="index"),
    path("admin/", admin.site.urls),
    path("", api.urls),
]
