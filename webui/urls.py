from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "webui"

urlpatterns = [
    path("", views.index, name="index"),
    path("from-url", views.from_url, name="from_url"),
    path("live", views.live, name="live"),
    path("jobs/", views.history, name="history"),
    path("jobs/<uuid:job_id>/", views.job_page, name="job"),
    path("jobs/<uuid:job_id>/audio", views.job_audio, name="audio"),
    path("jobs/<uuid:job_id>/cancel", views.job_cancel, name="cancel"),
    path("jobs/<uuid:job_id>/retry", views.job_retry, name="retry"),
    path("jobs/<uuid:job_id>/speakers", views.job_speakers, name="speakers"),
    path("jobs/<uuid:job_id>/share", views.job_share, name="share"),
    path("jobs/<uuid:job_id>/share/<int:link_id>/revoke", views.job_unshare, name="unshare"),
    path("s/<str:key>/", views.shared_job, name="shared"),
    path("s/<str:key>/audio", views.shared_audio, name="shared_audio"),
    path("s/<str:key>/result", views.shared_result, name="shared_result"),
    path("login/", auth_views.LoginView.as_view(template_name="webui/login.html", redirect_authenticated_user=True),
         name="login"),
    path("logout/", views.Logout.as_view(), name="logout"),
    path("account/", views.account, name="account"),
    path("account/tokens", views.account, name="account_tokens"),
]
