from django.urls import path

from . import views

app_name = "webui"

urlpatterns = [
    path("", views.index, name="index"),
]
