"""People (web side): personal API tokens, share links to single jobs, and a user's webhook settings."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from ..models import Account, ApiToken, Job, ShareLink
from .base import ServiceError, log

MAX_TOKEN_DAYS = 3650


def _expiry(days: int | None, default: int | None) -> datetime | None:
    days = default if days is None else days
    if days is None or days == 0:
        return None
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise ServiceError(422, f"expiry: give 1 to {MAX_TOKEN_DAYS} days (0: never)", "expires_in_days")
    return timezone.now() + timedelta(days=days)


def create_token(user, name: str, scope: str = ApiToken.Scope.WRITE, expires_in_days: int | None = None,
                 expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """A new personal token for `user` and its key: the only time the key exists outside its hash."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ServiceError(422, "name the token (1 to 100 characters), e.g. what will use it", "name")
    if scope not in ApiToken.Scope.values:
        raise ServiceError(422, f"scope: {' or '.join(ApiToken.Scope.values)}", "scope")
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError(422, "the expiry date is already past", "expires")
    token = ApiToken(user=user, name=name, scope=scope,
                     expires_at=expires_at or _expiry(expires_in_days, default=None))
    key = token.new_key()
    token.save()
    log.info("event=token_created user=%s token=%s scope=%s", user.pk, token.prefix, scope)
    return token, key


MAX_ID = 2**62  # row ids beyond this are not ids (and overflow the database's integer)


def revoke_token(user, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(user=user, pk=token_id).first() if 0 < token_id <= MAX_ID else None
    if token is None:
        raise ServiceError(404, f"you have no token {token_id}")
    token.revoke()
    log.info("event=token_revoked user=%s token=%s", user.pk, token.prefix)
    return token


def share(job: Job, by, expires_in_days: int | None = None) -> tuple[ShareLink, str]:
    """A read-only link to a finished job and its key (shown once)."""
    if job.status != Job.Status.DONE:
        raise ServiceError(409, f"job {job.id} is {job.status}: only a finished transcript can be shared")
    link = ShareLink(job=job, created_by=by, expires_at=_expiry(expires_in_days, settings.SHARE_LINK_DAYS))
    key = link.new_key()
    link.save()
    log.info("job=%s event=shared link=%s expires=%s", job.id, link.prefix, link.expires_at)
    return link, key


def unshare(job: Job, link_id: int) -> ShareLink:
    link = job.share_links.filter(pk=link_id).first() if 0 < link_id <= MAX_ID else None
    if link is None:
        raise ServiceError(404, f"job {job.id} has no share link {link_id}")
    link.revoke()
    log.info("job=%s event=unshared link=%s", job.id, link.prefix)
    return link


def set_callback(user, url: str) -> Account:
    """The user's default callback address (empty: none), checked as a job's would be."""
    from .intake import check_callback_url

    account = Account.of(user)
    account.callback_url = check_callback_url(url.strip()) if url.strip() else ""
    account.save(update_fields=["callback_url"])
    return account
