from django.urls import path

from . import views

app_name = "webui"

urlpatterns = [
    path("", views.index, name="index"),
    path("live", views.live, name="live"),
    path("jobs/", views.history, name="history"),
    path("jobs/<uuid:job_id>/", views.job_page, name="job"),
    path("jobs/<uuid:job_id>/audio", views.job_audio, name="audio"),
    path("jobs/<uuid:job_id>/cancel", views.job_cancel, name="cancel"),
    path("jobs/<uuid:job_id>/retry", views.job_retry, name="retry"),
    path("jobs/<uuid:job_id>/speakers", views.job_speakers, name="speakers"),
]
