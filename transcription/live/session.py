"""A live session in its worker: read the audio as the web process appends it, decode the growing
buffer with LocalAgreement (agreement.py), tell confirmed and tentative text, and when the session
ends (stop, limit, disconnect, the worker stopping) confirm the rest and turn the recording into an
ordinary job, decoded again offline."""
from __future__ import annotations

import logging
import threading
import time
import wave
from dataclasses import replace

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from .. import engines, modelstore
from ..models import LiveSession
from .agreement import Decoded, LocalAgreement, Word, text_of
from .files import BYTES_PER_SAMPLE, SAMPLE_RATE, SessionFiles

log = logging.getLogger("transcription")

# Set when this live worker stops: each session ends at once (1012, "service restart"), its
# recording kept as a job.
STOPPING = threading.Event()
BEAT_SECONDS = 2.0
POLL_SECONDS = 0.05
LOST_AFTER = 30.0  # past the idle limit: the web process holding the socket is gone

# close codes (RFC 6455 and the 4000-4999 private range), sent with the reason in `ended`
NORMAL, GOING_AWAY, UNSUPPORTED, LOST, POLICY, TOO_BIG, ERROR, RESTART, TRY_LATER = (
    1000, 1001, 1003, 1006, 1008, 1009, 1011, 1012, 1013)
IDLE, TOO_LONG, BAD_REQUEST, UNAUTHORIZED = 4408, 4413, 4400, 4401


def engine_decoder(engine_name: str, model: str, decode: engines.DecodeOptions):
    """`decode(samples, prompt)` for LocalAgreement through the job engines' own interface: one
    window, greedy unless the session asked for a beam (measured on base, 2 cores: 0.5-0.75 s a
    decoding of 3-15 s, against 0.55-0.95 s with a 5-wide beam), word timings, Silero VAD so
    silence costs nothing and says nothing. The language, when detected, is kept for the rest of
    the session."""
    engine = engines.get_engine(engine_name)
    model_dir = modelstore.engine_dir(model, engine_name)
    base = replace(decode, word_timestamps=True, condition_on_previous_text=False, batch_size=1,
                   temperature=(0.0,), vad_filter=True, hallucination_silence_threshold=None,
                   beam_size=decode.beam_size or 1)
    language = [decode.language]

    def run(samples: np.ndarray, prompt: str) -> Decoded:
        user = decode.initial_prompt or ""
        options = replace(base, language=language[0], initial_prompt=(user + " " + prompt).strip() or None)
        transcript = engine.transcribe(model_dir, samples, options, lambda _fraction: None)
        if language[0] is None and transcript.segments and len(samples) >= 3 * SAMPLE_RATE:
            language[0] = transcript.language
        words = [Word(w.start, w.end, w.word, w.probability)
                 for seg in transcript.segments for w in (seg.words or [])]
        return Decoded(words, [seg.end for seg in transcript.segments], transcript.language)

    return run


def _word_list(words: list[Word]) -> list[dict]:
    return [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3),
             "probability": round(w.probability, 4)} for w in words]


def _told(kind: str, words: list[Word]) -> dict:
    """A `final` or `partial` message of these words (a partial may be empty)."""
    return {"type": kind, "text": text_of(words), "start": round(words[0].start, 3) if words else None,
            "end": round(words[-1].end, 3) if words else None, "words": _word_list(words)}


def run(session_id: str) -> None:
    """Decode one session from start to end (a live worker thread)."""
    from ..services.base import worker_id

    now = timezone.now()
    if not LiveSession.objects.filter(pk=session_id, status=LiveSession.Status.WAITING).update(
            status=LiveSession.Status.LIVE, started_at=now, heartbeat_at=now, worker=worker_id()):
        return  # ended before a worker took it, or taken by another
    session = LiveSession.objects.get(pk=session_id)
    files = SessionFiles(session.id)
    decoder = None
    reason, code = "", NORMAL
    try:
        from ..services import intake

        chosen = intake.plan(session.request)
        decoder = LocalAgreement(engine_decoder(session.engine, session.model, chosen.spec.decode))
        decoder.decode(np.zeros(SAMPLE_RATE // 2, dtype=np.float32), "")  # the model loaded before audio counts
        files.tell([{"type": "session.ready"}])
        reason, code = _listen(session, files, decoder)
        rest = decoder.finish()
        files.tell(([_told("final", rest)] if rest else []) + [_told("partial", [])])
    except Exception as exc:  # the recording is still kept as a job
        log.exception("live=%s event=error", session.id)
        reason, code = f"live decoding failed: {type(exc).__name__}: {str(exc)[:150]}", ERROR
        files.tell([{"type": "error", "message": reason}])
    _end(session, files, text_of(decoder.confirmed) if decoder else "", reason, code)


def _listen(session: LiveSession, files: SessionFiles, decoder: LocalAgreement) -> tuple[str, int]:
    """Until the session is asked to end: take the audio, decode when enough has come."""
    offset, last_audio, last_beat = 0, time.monotonic(), 0.0
    while True:
        data = files.read_audio(offset)
        if data:
            offset += len(data)
            decoder.insert(np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0)
            last_audio = time.monotonic()
        now = time.monotonic()
        asked = files.end_request()
        if asked:
            return asked["reason"], int(asked["code"])
        if STOPPING.is_set():
            return "the live worker is stopping", RESTART
        if now - last_audio > settings.LIVE_IDLE_SECONDS + LOST_AFTER:
            return "the connection to the client was lost", LOST
        if now - last_beat > BEAT_SECONDS:
            last_beat = now
            LiveSession.objects.filter(pk=session.pk).update(
                heartbeat_at=timezone.now(), audio_seconds=decoder.received / SAMPLE_RATE)
        if decoder.waiting_seconds >= settings.LIVE_MIN_STEP_SECONDS:
            confirmed, tentative = decoder.step()
            files.tell(([_told("final", confirmed)] if confirmed else []) + [_told("partial", tentative)])
        else:
            time.sleep(POLL_SECONDS)


def _end(session: LiveSession, files: SessionFiles, text: str, reason: str, code: int) -> bool:
    """Close the session's row, turn its recording into a job and tell `ended`; False when the
    session was already ended elsewhere (the web process, after this worker fell silent)."""
    seconds = files.audio_seconds()
    job = None
    with transaction.atomic():
        open_ = (LiveSession.Status.WAITING, LiveSession.Status.LIVE)
        if not LiveSession.objects.filter(pk=session.pk, status__in=open_).update(
                status=LiveSession.Status.ENDED if code not in (ERROR, TRY_LATER) else LiveSession.Status.FAILED,
                ended_at=timezone.now(), audio_seconds=seconds, text=text, end_reason=reason[:200], end_code=code):
            return False
        try:
            with transaction.atomic():
                job = _recording_job(session, files, seconds)
        except Exception as exc:
            log.exception("live=%s event=job_not_created", session.id)
            reason = f"{reason}; the recording could not be kept: {str(exc)[:100]}"
            LiveSession.objects.filter(pk=session.pk).update(end_reason=reason[:200])
    files.tell([{"type": "ended", "reason": reason, "code": code, "audio_seconds": round(seconds, 3),
                 "job_id": str(job.id) if job else None, "text": text}])
    files.audio.unlink(missing_ok=True)
    files.dir.joinpath("audio.wav").unlink(missing_ok=True)
    asked = files.end_request() or {}
    if asked.get("gone") or code == LOST:  # no socket is left to read `ended`: nothing else needs the files
        files.remove()
    log.info("live=%s event=ended code=%d reason=%r audio_seconds=%.1f job=%s", session.id, code, reason, seconds,
             job.id if job else None)
    return True


def rescue(session_id, waited_for: float, silent_for: float) -> bool:
    """From the web process: end a session no live worker took within `waited_for` seconds, or
    whose worker stopped beating for `silent_for` (killed, its machine lost), keeping its
    recording as a job and the words it confirmed. False when neither is so."""
    from datetime import timedelta

    from django.db.models import Q

    now = timezone.now()
    session = LiveSession.objects.filter(pk=session_id).filter(
        Q(status=LiveSession.Status.WAITING, created_at__lt=now - timedelta(seconds=waited_for))
        | Q(status=LiveSession.Status.LIVE, heartbeat_at__lt=now - timedelta(seconds=silent_for))).first()
    if session is None:
        return False
    files = SessionFiles(session.id)
    if session.status == LiveSession.Status.WAITING:
        reason, code = "no live worker took the session in time; the recording is kept", TRY_LATER
    else:
        reason, code = "the live worker stopped; what it confirmed and the recording are kept", ERROR
    told, _ = files.read_messages(0)
    text = " ".join(m["text"] for m in told if m.get("type") == "final")
    log.warning("live=%s event=rescued status=%s worker=%s", session.id, session.status, session.worker)
    return _end(session, files, text, reason, code)


def _recording_job(session: LiveSession, files: SessionFiles, seconds: float):
    """The recording as an upload and a queued job with the session's options (None: no audio)."""
    from ..services import intake

    if seconds < 0.1:
        return None
    wav = files.dir / "audio.wav"
    with wave.open(str(wav), "wb") as out, open(files.audio, "rb") as pcm:
        out.setnchannels(1)
        out.setsampwidth(BYTES_PER_SAMPLE)
        out.setframerate(SAMPLE_RATE)
        while chunk := pcm.read(1 << 20):
            out.writeframes(chunk)
    name = f"live-{timezone.localtime(session.created_at):%Y-%m-%d-%H%M%S}.wav"
    with open(wav, "rb") as fh:
        upload = UploadedFile(fh, name=name, content_type="audio/wav", size=wav.stat().st_size)
        job = intake.create_job(upload, session.request, owner=session.owner, within_quota=False)
    LiveSession.objects.filter(pk=session.pk).update(job=job)
    return job
