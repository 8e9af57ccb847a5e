"""Web pages: upload, job (transcript viewer), history, and the job's audio for the player.

Thin: read through `selectors`, act through `transcription.services`, render. The upload page
itself sends files to the REST API (`POST /transcribe`), so the upload rules live in one place."""
from __future__ import annotations

import functools
from urllib.parse import urlencode
from uuid import UUID

import pydantic
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import LogoutView, redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from transcription import formats, services
from transcription import selectors as reads
from transcription import access
from transcription.auth import JOB_THROTTLE
from transcription.models import Job
from transcription.uploads import ALLOWED_EXTENSIONS

from . import display
from .forms import AccountCallbackForm, OptionsForm, ShareForm, SpeakerNamesForm, TokenForm
from .media import ranged_file_response
from .templatetags.webui import filesize


def with_actor(view):
    """Who is asking (transcription.access) on `request.actor`: a bearer token (a script fetching a
    job's audio), the logged-in user, or anyone on an open service; else the login page."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        try:
            actor = access.of_page(request)
        except access.Refused as exc:
            response = HttpResponse(exc.message + "\n", status=exc.status, content_type="text/plain; charset=utf-8")
            if exc.status == 401:
                response["WWW-Authenticate"] = "Bearer"
            return response
        if actor is None:
            return redirect_to_login(request.get_full_path(), reverse("webui:login"))
        request.actor = actor
        return view(request, *args, **kwargs)

    return wrapped


def js_strings() -> dict[str, str]:
    """Messages the page scripts show, in the page's language."""
    return {
        "queued": _("Queued"), "running": _("Running"), "done": _("Done"), "failed": _("Failed"),
        "cancelled": _("Cancelled"), "uploading": _("Uploading"), "uploaded": _("Uploaded"),
        "rejected": _("Rejected"), "waiting": _("Waiting to upload"),
        "bad_extension": _("%(name)s: this file type is not accepted (allowed: %(allowed)s)."),
        "too_large": _("%(name)s is %(size)s, over the %(limit)s limit."),
        "empty": _("%(name)s is empty."),
        "network_error": _("The upload was interrupted (connection closed). Over the size limit?"),
        "fetching": _("Fetching"), "fetching_detail": _("The server is downloading the file…"),
        "fetched": _("Fetched by the server"), "bad_url": _("Give an http:// or https:// address."),
        "network_error_url": _("The connection to the server was lost while it fetched the file."),
        "server_error": _("The server answered %(status)s."),
        "elapsed": _("elapsed %(time)s"), "eta": _("about %(time)s left"),
        "of": _("%(done)s of %(total)s"), "open": _("Open"), "cancel": _("Cancel"),
        "copied": _("Copied to the clipboard."), "copy_failed": _("Could not copy; select the text instead."),
        "no_model": _("No model is installed; see the README."),
        # humanSize() in common.js: the same steps and words as the filesize filter
        "size_bytes": _("%(value)s bytes"), "size_kb": _("%(value)s KB"), "size_mb": _("%(value)s MB"),
        "size_gb": _("%(value)s GB"),
        "cannot_play": _("Your browser cannot play this file; the transcript is still usable."),
        "text_so_far": _("The text decoded so far is above, under the progress; the full transcript will"
                         " show here once the job has finished."),
        "live_microphone": _("Asking for the microphone…"),
        "live_insecure": _("Browsers give the microphone only to pages opened over https:// or on"
                           " localhost: open this page so (or put the service behind HTTPS)."),
        "live_no_microphone": _("The microphone could not be opened: %(error)s"),
        "live_waiting": _("Connected; waiting for the live worker to load the model…"),
        "live_listening": _("Listening: speak now."),
        "live_ending": _("Ending: confirming the last words and keeping the recording…"),
        "live_kept": _("The recording is kept as a job."),
        "live_closed": _("The connection closed (%(code)s) %(reason)s"),
        "live_closed_kept": _("The connection closed, but the session ended on the server and its recording"
                              " is kept as a job."),
        "live_end_1000": _("Stopped."),
        "live_end_1003": _("The server did not accept what the page sent, so the session ended."),
        "live_end_1006": _("The connection was lost."),
        "live_end_1008": _("You already have a live session open (one per person at a time); end it first."),
        "live_end_1009": _("A piece of audio was too large, so the session ended."),
        "live_end_1011": _("Live decoding stopped on the server."),
        "live_end_1012": _("The server is restarting."),
        "live_end_1013": _("No live session can start now: the server is busy or its live worker is not"
                           " running. Try again shortly."),
        "live_end_4401": _("Log in first: this server needs it."),
        "live_end_4408": _("No sound came for a while, so the session ended."),
        "live_end_4413": _("The session reached its longest allowed length."),
    }


def _index_context(form: OptionsForm | None = None, url: str = "", url_error: str = "") -> dict:
    return {
        "form": form or OptionsForm(),
        "accept": ",".join(ALLOWED_EXTENSIONS),
        "extensions": ", ".join(ALLOWED_EXTENSIONS),
        "max_bytes": settings.MAX_UPLOAD_BYTES,
        "max_size": filesize(settings.MAX_UPLOAD_BYTES),
        "js_strings": js_strings(),
        "no_worker": not services.workers_available(),
        "url": url,
        "url_error": url_error,
    }


@require_safe
@with_actor
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "webui/index.html", _index_context())


@require_POST
@with_actor
def from_url(request: HttpRequest) -> HttpResponse:
    """The upload page's "From a URL" without JavaScript (its script sends the address to the API,
    POST /transcribe, instead): a job for the file at the address, or the page again saying why not."""
    form = OptionsForm(request.POST)
    url = request.POST.get("url", "").strip()
    status, url_error, valid = 422, "", form.is_valid()
    if not all(throttle.allow_request(request) for throttle in JOB_THROTTLE):
        status, url_error = 429, _("Too many new jobs (JOB_RATE_LIMIT): try again in a minute.")
    elif not url:
        url_error = _("Give the http:// or https:// address of an audio or video file.")
    elif valid:
        try:
            job = services.create_job_from_url(url, form.options(), owner=request.actor.owner)
        except pydantic.ValidationError as exc:
            form.add_schema_errors(exc)
        except services.ServiceError as exc:
            status = exc.status
            if exc.field in form.fields:
                form.add_error(exc.field, exc.message)
            else:
                url_error = exc.message
        else:
            return redirect("webui:job", job_id=job.id)
    if url_error:
        form.add_error(None, url_error)
    return render(request, "webui/index.html", _index_context(form, url, url_error), status=status)


@require_safe
@with_actor
def live(request: HttpRequest) -> HttpResponse:
    form = OptionsForm()
    unavailable = None
    if services.live_unavailable():  # the service's own words are English: say it in the page's language
        unavailable = (_("Live transcription is turned off on this server (LIVE_MAX_SESSIONS=0).")
                       if settings.LIVE_MAX_SESSIONS == 0 else
                       _("No live worker is running, so live transcription is unavailable: start one"
                         " (python manage.py run_live), or run the service with make run."))
    form.fields["language"].widget.attrs["data-default"] = form["language"].value()
    return render(request, "webui/live.html", {
        "fields": [form["language"], form["task"], form["model"]],
        "live_available": not unavailable, "live_unavailable": unavailable,
        "js_strings": js_strings(),
    })


@require_safe
@with_actor
def history(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or None
    status = status if status in Job.Status.values else None
    several = request.GET.get("speakers") == "several"
    page = reads.history_page(request.actor, request.GET.get("page"), status, several_speakers=several)
    filters = {"status": status, "speakers": "several" if several else None}
    return render(request, "webui/jobs.html", {
        "page": page, "status": status, "several_speakers": several, "statuses": Job.Status.choices,
        "filters": urlencode({k: v for k, v in filters.items() if v}),
    })


def _job_context(job: Job, form: OptionsForm | None = None, names_form: SpeakerNamesForm | None = None,
                 shared: str | None = None) -> dict:
    """What the job page shows; `shared`: the key of a share link it is seen through (read-only:
    no history, actions or settings, the audio and downloads through the link)."""
    result = job.result if job.status == Job.Status.DONE else None
    speakers = display.speakers(job)
    segments = (result or {}).get("segments") or []
    return {
        "job": job,
        "upload": job.upload,
        "result": result,
        "segments": display.labelled_segments(segments, speakers),
        "has_words": any(s.get("words") for s in segments),
        "has_text": bool(((result or {}).get("text") or "").strip()),
        # with speakers, the text reads as the .txt download does: one "Name: …" paragraph a turn
        "text": formats.to_txt(job.named_result).strip() if speakers else (result or {}).get("text"),
        "speakers": speakers,
        "names_form": names_form or SpeakerNamesForm(speakers),
        "duration": job.duration,
        "rtf": job.rtf,
        "language": display.language_summary(job),
        "options": display.option_rows(job),
        "formats": formats.NAMES,
        "active": job.status in (Job.Status.QUEUED, Job.Status.RUNNING),
        "retry_form": form or OptionsForm(initial=OptionsForm.initial_from_job(job)),
        "audio_stored": job.upload.is_stored,
        "live_session": reads.live_session_of(job) if not shared else None,
        "js_strings": js_strings(),
        "shared": bool(shared),
        "audio_url": reverse("webui:shared_audio", args=[shared]) if shared else reverse("webui:audio", args=[job.id]),
        "result_url": reverse("webui:shared_result", args=[shared]) if shared else f"/job/{job.id}/result",
        "share_links": reads.share_links(job) if not shared else (),
        "share_days": settings.SHARE_LINK_DAYS,
    }


@require_safe
@with_actor
def job_page(request: HttpRequest, job_id: UUID) -> HttpResponse:
    return render(request, "webui/job.html", _job_context(reads.job_or_404(job_id, request.actor)))


@require_POST
@with_actor
def job_cancel(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = reads.job_or_404(job_id, request.actor)
    try:
        services.cancel(job)
        messages.success(request, _("The job was cancelled."))
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("webui:job", job_id=job.id)


@require_POST
@with_actor
def job_retry(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = reads.job_or_404(job_id, request.actor)
    form = OptionsForm(request.POST)
    if form.is_valid():
        try:
            new = services.retry(job, form.options())
        except pydantic.ValidationError as exc:
            form.add_schema_errors(exc)
        except services.ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, _("A new job was queued with these options."))
            return redirect("webui:job", job_id=new.id)
    return render(request, "webui/job.html", _job_context(job, form), status=422)


@require_POST
@with_actor
def job_speakers(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = reads.job_or_404(job_id, request.actor)
    form = SpeakerNamesForm(display.speakers(job), request.POST)
    if form.is_valid():
        try:
            services.rename_speakers(job, form.names())
        except services.ServiceError as exc:
            form.add_error(None, exc.message)
            return render(request, "webui/job.html", _job_context(job, names_form=form), status=exc.status)
        messages.success(request, _("The speakers' names were saved; the downloads use them too."))
        return redirect("webui:job", job_id=job.id)
    return render(request, "webui/job.html", _job_context(job, names_form=form), status=422)


@require_safe
@with_actor
def job_audio(request: HttpRequest, job_id: UUID) -> HttpResponse:
    return _audio(request, reads.job_or_404(job_id, request.actor))


def _audio(request: HttpRequest, job: Job) -> HttpResponse:
    """The job's uploaded file, for the player (Range requests) or, with ?download=1, to keep."""
    if not job.upload.is_stored:
        raise Http404(_("The uploaded file is no longer stored."))
    path = job.upload.path
    name = job.upload.original_name if request.GET.get("download") else None
    return ranged_file_response(request, path, job.upload.sha256 or f"{path.stat().st_size}", name)


# --- sharing: read-only links to one finished job --------------------------------------------------


@require_POST
@with_actor
def job_share(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = reads.job_or_404(job_id, request.actor)
    form = ShareForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(m for errors in form.errors.values() for m in errors))
        return redirect("webui:job", job_id=job.id)
    try:
        link, key = services.share(job, request.actor.owner, form.cleaned_data["days"])
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    else:
        url = request.build_absolute_uri(reverse("webui:shared", args=[key]))
        messages.success(request, _("Share link (copy it now: it is shown only once): %(url)s") % {"url": url},
                         extra_tags="share-link")
    return redirect(reverse("webui:job", args=[job.id]) + "#share")


@require_POST
@with_actor
def job_unshare(request: HttpRequest, job_id: UUID, link_id: int) -> HttpResponse:
    job = reads.job_or_404(job_id, request.actor)
    try:
        services.unshare(job, link_id)
        messages.success(request, _("The link was revoked: it no longer opens anything."))
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(reverse("webui:job", args=[job.id]) + "#share")


def _shared(key: str, visit: bool = False):
    link, job = reads.shared_job_or_404(key)
    if visit:  # the page counts as one visit; its audio and downloads do not count again
        link.touch()
    return job


@require_safe
def shared_job(request: HttpRequest, key: str) -> HttpResponse:
    """A job seen through a share link: anyone holding the link, no account needed."""
    job = _shared(key, visit=True)
    response = render(request, "webui/job.html", _job_context(job, shared=key))
    response["X-Robots-Tag"] = "noindex"
    response["Referrer-Policy"] = "no-referrer"  # the key is in the URL: never hand it on
    return response


@require_safe
def shared_audio(request: HttpRequest, key: str) -> HttpResponse:
    return _audio(request, _shared(key))


@require_safe
def shared_result(request: HttpRequest, key: str) -> HttpResponse:
    from urllib.parse import quote

    job = _shared(key)
    try:
        body, content_type, filename = services.result_file(job, request.GET.get("format", "txt"),
                                                            formats.SubtitleOptions(None, None, False, None))
    except services.ServiceError as exc:
        return HttpResponse(exc.message + "\n", status=exc.status, content_type="text/plain; charset=utf-8")
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    return response


# --- the user's account: API tokens, callbacks, quotas ---------------------------------------------


def _account_context(request: HttpRequest, token_form=None, callback_form=None) -> dict:
    from transcription.models import Account

    account = Account.of(request.user)
    return {
        "tokens": request.user.api_tokens.order_by("-created_at"),
        "token_form": token_form or TokenForm(),
        "callback_form": callback_form or AccountCallbackForm(initial={"callback_url": account.callback_url}),
        "account": account,
        "audio_used": account.audio_seconds_today(),
        "audio_limit": account.audio_limit_seconds,
        "queued": account.queued_now(),
        "queued_limit": account.queued_limit,
    }


def _logged_in(view):
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("webui:login"))
        return view(request, *args, **kwargs)

    return wrapped


@_logged_in
def account(request: HttpRequest) -> HttpResponse:
    """The logged-in user's API tokens (made here, shown once), webhook settings and quota use."""
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            form = TokenForm(request.POST)
            if form.is_valid():
                try:
                    token, key = services.create_token(request.user, form.cleaned_data["name"],
                                                       form.cleaned_data["scope"], form.cleaned_data["days"])
                except services.ServiceError as exc:
                    form.add_error(None, exc.message)
                else:
                    context = _account_context(request)
                    context["new_key"], context["new_token"] = key, token
                    return render(request, "webui/account.html", context)
            return render(request, "webui/account.html", _account_context(request, token_form=form), status=422)
        if action == "revoke":
            try:
                token = services.revoke_token(request.user, int(request.POST.get("token", "0") or 0))
                messages.success(request, _("The token “%(name)s” was revoked: requests with it are now refused.")
                                 % {"name": token.name})
            except (ValueError, services.ServiceError):
                messages.error(request, _("You have no such token; nothing was revoked."))
            return redirect("webui:account")
        if action == "callback":
            form = AccountCallbackForm(request.POST)
            if form.is_valid():
                try:
                    services.set_callback(request.user, form.cleaned_data["callback_url"])
                except services.ServiceError as exc:
                    form.add_error("callback_url", exc.message.removeprefix("callback_url: "))
                else:
                    messages.success(request, _("The default callback URL was saved."))
                    return redirect("webui:account")
            return render(request, "webui/account.html", _account_context(request, callback_form=form), status=422)
        if action == "secret":
            from transcription.models import Account

            Account.of(request.user).new_webhook_secret()
            messages.success(request, _("A new webhook secret was made; callbacks are signed with it from now on."))
            return redirect("webui:account")
        messages.error(request, _("The page sent something this form does not know; nothing was changed."))
        return redirect("webui:account")
    return render(request, "webui/account.html", _account_context(request))


class Logout(LogoutView):
    """Log out by POST (the top bar's button); a GET, e.g. a typed address, gets the button to press."""

    http_method_names = ["get", "post", "options"]

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return render(request, "webui/logout.html")
