"""Pipeline (worker side): run one job from the stored upload to the stored result, reporting
progress and stopping at checkpoints when it is cancelled or handed back. The only module that
runs an engine."""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from .. import audio, engines, events, formats, modelstore
from ..engines import Cancelled, Transcript
from ..models import Job, TransitionError, media_file
from ..result import Result, StoredSegment, Word
from . import recovery
from .base import log, worker_id

# --- running a job (in the worker) ---------------------------------------------------------------


class _Progress:
    """Turns the engine's fraction decoded into throttled row updates with an estimate of the
    finish, and into the checkpoints where a job is cancelled or handed back."""

    def __init__(self, job: Job, audio_seconds: float, min_interval: float = 0.5) -> None:
        self.job = job
        self.min_interval = min_interval
        self.last_write = 0.0
        self.last_percent = -1.0
        self.began: float | None = None  # when decoding started (the first report)
        # Before this job has decoded anything: the speed recent jobs of this model measured.
        rtf = typical_rtf(job.model, job.engine)
        self.prior = audio_seconds * rtf if rtf is not None else None

    def __call__(self, fraction: float) -> None:
        if recovery.stopping():  # the worker is shutting down: hand the job back at this boundary
            raise recovery.HandBack()
        now = time.monotonic()
        self.began = now if self.began is None else self.began
        fraction = max(0.0, min(1.0, fraction))
        percent = round(99.0 * fraction, 1)  # 100 only when the result exists
        if now - self.last_write < self.min_interval and percent - self.last_percent < 5:
            return
        self.last_write = now
        self.last_percent = percent
        if self.job.should_stop():
            raise Cancelled()
        self.job.set_progress(percent, self._finish(now, fraction))

    def _finish(self, now: float, fraction: float):
        """When decoding should end: from this job's own speed once it has one, else the prior."""
        elapsed = now - self.began
        if fraction >= 0.01 and elapsed > 0:
            remaining = elapsed * (1.0 - fraction) / fraction
        elif self.prior is not None:
            remaining = max(0.0, self.prior - elapsed)
        else:
            return None
        return timezone.now() + timedelta(seconds=remaining)


def typical_rtf(model: str, engine: str, recent: int = 20) -> float | None:
    """Median inference seconds per audio second of the last finished jobs of this model and
    engine on any worker (None before the first)."""
    jobs = (Job.objects.filter(status=Job.Status.DONE, model=model, engine=engine, audio_duration__gt=5,
                               inference_seconds__gt=0)
            .order_by("-finished_at").only("inference_seconds", "audio_duration")[:recent])
    ratios = sorted(job.rtf for job in jobs)
    return ratios[len(ratios) // 2] if ratios else None


def run_job(job_id: str) -> None:
    """Convert, transcribe and store one queued job. Safe to call twice: only one run wins."""
    if recovery.stopping():  # taken from the queue as the worker stops: leave it there
        recovery.enqueue_quietly(job_id)
        return
    try:
        job = Job.objects.select_related("upload").get(pk=job_id)
    except Job.DoesNotExist:
        log.warning("job=%s event=missing", job_id)
        return
    try:
        job.start(worker=worker_id())
    except TransitionError as exc:
        log.info("job=%s event=skipped reason=%r", job_id, str(exc))
        return
    with recovery.running(job_id):
        _run_started(job)


def _run_started(job: Job) -> None:
    log.info("job=%s event=started model=%s engine=%s worker=%s attempt=%d", job.id, job.model,
             job.engine, job.worker, job.attempts)
    work = Path(tempfile.mkdtemp(prefix=f"job-{job.id}-", dir=settings.FILE_UPLOAD_TEMP_DIR))
    began = time.monotonic()
    heartbeat = recovery.JobHeartbeat(job)
    try:
        _transcribe(job, work)
    except recovery.HandBack:
        recovery.hand_back(job)
    except Cancelled:
        log.info("job=%s event=cancelled seconds=%.2f", job.id, time.monotonic() - began)
    except audio.AudioError as exc:
        _fail(job, str(exc), Job.ErrorCode.BAD_AUDIO)
    except Exception as exc:  # the worker must outlive any one job; the row says what happened
        log.exception("job=%s event=error", job.id)
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        _fail(job, f"transcription failed: {type(exc).__name__}: {first_line}", Job.ErrorCode.ENGINE_ERROR)
    finally:
        heartbeat.stop()
        shutil.rmtree(work, ignore_errors=True)


def _fail(job: Job, reason: str, code: str) -> None:
    try:
        job.fail(reason, code)
        log.info("job=%s event=failed code=%s reason=%r", job.id, code, reason)
    except (TransitionError, Job.DoesNotExist):
        pass


def _transcribe(job: Job, work: Path) -> None:
    silence = job.spec.silence
    events.start(job.id)
    source = job.upload.path
    if source is None:  # a row pointing outside MEDIA_ROOT: treat as gone, never follow it
        raise audio.AudioError(audio.GONE)
    t0 = time.monotonic()
    samples = audio.convert(source, work / "audio.f32")
    conversion = time.monotonic() - t0
    duration = len(samples) / audio.SAMPLE_RATE
    trim = audio.Trim(0, len(samples))
    if silence.remove:
        trim = audio.find_speech_bounds(samples, silence.threshold_db, silence.min_duration)
    job.record(conversion_seconds=conversion, audio_duration=duration, silence_offset=trim.offset)
    log.info("job=%s event=converted seconds=%.2f audio_seconds=%.2f trimmed_start=%.2f trimmed_end=%.2f",
             job.id, conversion, duration, trim.offset, (len(samples) - trim.end) / audio.SAMPLE_RATE)

    voices = _known_voices(job, work)  # a bad sample fails the job before the long part
    t1 = time.monotonic()
    transcript = _transcribe_pieces(job, samples, trim)
    inference = time.monotonic() - t1

    result = build_result(job, transcript, trim.offset, duration,
                          {"conversion_seconds": conversion, "inference_seconds": inference})
    if job.spec.speakers.diarize:
        result = _diarize(job, result, samples, trim, voices)
    del samples
    stored = formats.jsonable(result.model_dump(mode="json"))  # strict JSON: no NaN
    text_rel = _write_text(job, stored)
    try:
        job.finish(stored, text_rel, inference_seconds=inference, language=transcript.language[:16],
                   language_probability=transcript.language_probability)
    except (TransitionError, Job.DoesNotExist):  # cancelled or deleted meanwhile: keep nothing
        media_file(text_rel).unlink(missing_ok=True)
        raise Cancelled() from None
    log.info("job=%s event=done model=%s engine=%s audio_seconds=%.2f conversion_seconds=%.2f"
             " inference_seconds=%.2f rtf=%.3f", job.id, job.model, job.engine, duration,
             conversion, inference, job.rtf or 0.0)


def _transcribe_pieces(job: Job, samples, trim: audio.Trim) -> Transcript:
    """Run the engine over the kept audio, piece by piece for long files (bounded memory), with
    segments moved onto the uploaded file's timeline."""
    decode = job.spec.decode
    if trim.end <= trim.start:  # nothing above the silence threshold: nothing to say
        return Transcript(language=decode.language or "", language_probability=None, segments=[])
    engine = engines.get_engine(job.engine)
    model_path = modelstore.engine_dir(job.model, job.engine)
    pieces = audio.split_points(samples, trim.start, trim.end, settings.WHISPER_WINDOW_SECONDS)
    total = trim.end - trim.start
    progress = _Progress(job, total / audio.SAMPLE_RATE)
    teller = events.Teller(job.id)  # segments for the job's event stream, as they are decoded
    segments: list = []
    language, probability = decode.language, None
    for first, last in pieces:
        # Each piece starts fresh but for the user's prompt, as batched Whisper pipelines do:
        # measured on the shared reading, feeding one piece's text to the next as its prompt made
        # the model skip the next piece's last sentence.
        options = replace(decode, language=language)
        done, at = first - trim.start, first / audio.SAMPLE_RATE
        piece = engine.transcribe(
            model_path, samples[first:last], options,
            lambda f, done=done, size=last - first: progress((done + f * size) / total),
            lambda found, told, at=at: teller.take([seg.shifted(at) for seg in found], at + told))
        if decode.language is None and language is None:  # detected, in the first piece
            probability = piece.language_probability
        language = language or piece.language
        for seg in piece.segments:
            moved = seg.shifted(first / audio.SAMPLE_RATE)
            moved.id = len(segments)
            segments.append(moved)
    teller.take([], None)

    if len(pieces) > 1:
        log.info("job=%s event=transcribed pieces=%d", job.id, len(pieces))
    return Transcript(language=language or "", language_probability=probability, segments=segments)


def _known_voices(job: Job, work: Path) -> list[tuple[str, object]]:
    """(name, samples) of each known speaker's sample, each checked to hold speech."""
    from ..engines.windows import has_speech

    voices = []
    for i, voice in enumerate(job.spec.speakers.known):
        source = media_file(voice.file)
        if source is None or not source.is_file():
            raise audio.AudioError(f"the sample of known speaker {voice.name!r} is no longer stored")
        samples = audio.convert(source, work / f"voice-{i}.f32")
        if not has_speech(samples, min_seconds=1.0):
            raise audio.AudioError(f"the sample of known speaker {voice.name!r} has no speech"
                                   " (at least 1 s of that voice alone is needed)")
        voices.append((voice.name, samples))
    return voices


def _diarize(job: Job, result: Result, samples, trim: audio.Trim, voices: list) -> Result:
    """Who spoke when, onto the result's words and segments (speakers/assign.py)."""
    from .. import speakers
    from ..speakers import assign

    if job.should_stop():
        raise Cancelled()
    wanted = job.spec.speakers
    began = time.monotonic()
    backend = speakers.get(wanted.backend or speakers.default_backend().name)
    count = speakers.Count(wanted.num_speakers, wanted.min_speakers, wanted.max_speakers)
    found = backend.diarize(samples[trim.start:trim.end], count)
    known = [(name, backend.embed_voice(voice)) for name, voice in voices]
    segments, listed = assign.label(result.segments, found, trim.offset, assign.match(found.voices, known))
    seconds = time.monotonic() - began
    log.info("job=%s event=diarized backend=%s speakers=%d seconds=%.2f", job.id, backend.name, len(listed), seconds)
    return result.model_copy(update={"segments": segments, "speakers": listed,
                                     "timings": {**result.timings, "diarization_seconds": seconds}})


def result_names(job: Job) -> tuple[str, str]:
    """(uploaded_file, result .txt) names, as the specification shapes them."""
    uploaded = Path(job.upload.stored_path).name
    return uploaded, f"{Path(uploaded).stem}.txt"


def build_result(job: Job, transcript: Transcript, offset: float, duration: float, timings: dict) -> Result:
    """The job's result, once: segments and words already on the uploaded file's timeline."""
    from ..models import LiveSession

    uploaded, txt_name = result_names(job)
    decode = job.spec.decode
    live = LiveSession.objects.filter(job=job).values("id", "text").first()
    segments = [StoredSegment(
        id=seg.id, start=round(seg.start, 3), end=round(seg.end, 3), text=seg.text.strip(), seek=seg.seek,
        tokens=seg.tokens, avg_logprob=seg.avg_logprob, no_speech_prob=seg.no_speech_prob,
        compression_ratio=seg.compression_ratio, temperature=seg.temperature,
        words=[Word(start=round(w.start, 3), end=round(w.end, 3), word=w.word, probability=w.probability)
               for w in seg.words] if decode.word_timestamps and seg.words is not None else None,
    ) for seg in transcript.segments]
    return Result(
        text=transcript.text, language=transcript.language, language_probability=transcript.language_probability,
        model=job.model, engine=job.engine, task=decode.task, word_timestamps=decode.word_timestamps,
        condition_on_previous_text=decode.condition_on_previous_text,
        no_speech_threshold=decode.no_speech_threshold,
        hallucination_silence_threshold=job.options["hallucination_silence_threshold"],
        segments=segments, uploaded_file=uploaded, result_file=txt_name, job_id=str(job.id),
        duration=round(duration, 3), silence_offset=round(offset, 3),
        options={**job.options, "model": job.model, "engine": job.engine}, timings=timings,
        live={"session_id": str(live["id"]), "text": live["text"]} if live else None,
    )


def _write_text(job: Job, result: dict) -> str:
    """The specification's result file (.txt); the result itself is kept in the job's row."""
    text_rel = f"results/{result_names(job)[1]}"
    mode = settings.FILE_UPLOAD_PERMISSIONS  # results are kept like uploads
    formats.write_atomic(media_file(text_rel), formats.to_txt(result), mode)
    return text_rel


def release_idle_models() -> int:
    """Models this process has not used for WHISPER_MODEL_TTL go (see engines/cache.py), and so do
    idle ones whose folder was removed (the Models page, DELETE /models/{name}) on any machine."""
    removed = engines.models.release_where(lambda key: not Path(key[1]).is_dir())
    return engines.models.release_idle() + removed


def loaded_models() -> list[dict]:
    """What this process's model cache holds, as Worker.loaded_models keeps it."""
    loaded = []
    for key, last_used in engines.models.last_used().items():
        name = modelstore.name_of(key[1])
        if name is not None:
            loaded.append({"name": name, "engine": key[0],
                           "last_used": datetime.fromtimestamp(last_used, UTC).isoformat()})
    return sorted(loaded, key=lambda item: (item["name"], item["engine"]))
