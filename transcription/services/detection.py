"""Which language a file is in: the web side stores the file and waits; a worker decodes its
first 30 s of speech (after the leading silence is trimmed) and asks the model."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from .. import audio, engines, modelstore
from ..engines import EngineUnavailable
from ..languages import LANGUAGES
from ..spec import Silence
from ..uploads import safe_name, shown_name
from .base import ServiceError, log
from .intake import _check_file, _engine, media
from .recovery import NO_WORKER, workers_available

DETECT_SECONDS = 30  # what Whisper hears at once, and all that language detection looks at
TOP_DEFAULT = 5


def _model(requested: str | None) -> str:
    """The requested model if installed and multilingual, else the default if multilingual, else the
    largest installed multilingual one."""
    installed = modelstore.installed_names()
    if requested:
        if requested not in installed:
            raise ServiceError(422, f"model {requested!r} is not installed; installed models:"
                                    f" {', '.join(installed) or 'none'}", "model")
        if not modelstore.spec(requested).multilingual:
            raise ServiceError(422, f"model {requested!r} is English-only and cannot tell languages apart;"
                                    " choose a multilingual model", "model")
        return requested
    multilingual = [name for name in installed if modelstore.spec(name).multilingual]
    default = modelstore.default_model()
    if default in multilingual:
        return default
    if not multilingual:
        raise ServiceError(503, "no multilingual Whisper model is installed (English-only models cannot tell"
                                " languages apart); install one: python manage.py install_model base", "model")
    return multilingual[-1]  # NAMES run from the smallest to the largest


def detect(uploaded: UploadedFile, model: str | None = None, engine: str | None = None,
           top: int = TOP_DEFAULT, field: str = "file") -> dict:
    """The file's languages, most probable first (web side: stores it, has a worker decide, waits)."""
    from ..tasks import detect_language

    _check_file(uploaded, field)
    name = _model(model)
    engine_name = _engine(engine, name)
    if not workers_available():
        raise ServiceError(503, NO_WORKER)
    rel = f"detect/{uuid.uuid4().hex}_{safe_name(uploaded.name or 'audio')}"
    target = media(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "wb") as out:
            for chunk in uploaded.chunks():
                out.write(chunk)
        try:
            audio.probe(target)
        except audio.AudioError as exc:
            raise ServiceError(422, f"{shown_name(uploaded.name)}: {exc}", field) from None
        pending = detect_language(rel, name, engine_name)
        answer = pending.get(blocking=True, timeout=settings.DETECT_WAIT_SECONDS, backoff=1.15, max_delay=0.2)
    except Exception as exc:
        if type(exc).__name__ == "ResultTimeout":
            raise ServiceError(503, f"no worker answered within {settings.DETECT_WAIT_SECONDS:g} s (they may all be"
                                    " busy with long files); try again later") from None
        raise
    finally:
        target.unlink(missing_ok=True)
    if "error" in answer:
        raise ServiceError(answer.get("status", 422), f"{shown_name(uploaded.name)}: {answer['error']}", field)
    languages = answer["languages"][: max(1, top)]
    best = languages[0]
    return {
        # whisper-asr-webservice's answer, field for field
        "detected_language": LANGUAGES.get(best["code"], best["code"]).lower(),
        "language_code": best["code"],
        "confidence": best["probability"],
        # and the service's fuller one
        "languages": languages,
        "model": name,
        "engine": engine_name,
        "speech_start": answer["speech_start"],
        "seconds_used": answer["seconds_used"],
        "seconds": answer["seconds"],
    }


def run_detection(rel: str, model: str, engine: str) -> dict:
    """Worker side: decode the file, skip its leading silence, ask the model about the first 30 s.
    Returns the answer, or {"error", "status"} for a file that cannot be used (never raises for one)."""
    path = media(rel)
    work = Path(settings.DATA_DIR) / "work" / f"detect-{uuid.uuid4().hex}"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        samples = audio.convert(path, work / "audio.f32")
        silence = Silence()
        trim = audio.find_speech_bounds(samples, silence.threshold_db, silence.min_duration)
        if trim.end <= trim.start:
            return {"error": "no speech was found (the whole file is below the silence threshold)", "status": 422}
        window = samples[trim.start: min(trim.end, trim.start + DETECT_SECONDS * audio.SAMPLE_RATE)]
        probabilities = engines.get_engine(engine).detect_language(modelstore.engine_dir(model, engine), window)
    except audio.AudioError as exc:
        return {"error": str(exc), "status": 422}
    except (EngineUnavailable, ValueError) as exc:
        return {"error": str(exc), "status": 422}
    finally:
        for leftover in work.glob("*"):
            leftover.unlink(missing_ok=True)
        work.rmdir()
    log.info("event=language_detected model=%s engine=%s language=%s probability=%.3f seconds=%.2f", model,
             engine, probabilities[0][0], probabilities[0][1], time.monotonic() - t0)
    return {
        "languages": [{"code": code, "name": LANGUAGES.get(code, code), "probability": round(p, 4)}
                      for code, p in probabilities],
        "speech_start": round(trim.start / audio.SAMPLE_RATE, 2),
        "seconds_used": round(len(window) / audio.SAMPLE_RATE, 2),
        "seconds": round(len(samples) / audio.SAMPLE_RATE, 2),
    }
