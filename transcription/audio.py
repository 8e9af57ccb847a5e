"""FFmpeg: find it, probe a file, decode it to 16 kHz mono float32, trim leading/trailing silence."""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

SAMPLE_RATE = 16_000


class AudioError(Exception):
    """The file cannot be used as audio; the message says why, in words a client can act on."""


class FFmpegMissing(RuntimeError):
    """No FFmpeg binary could be found."""


@functools.cache
def ffmpeg_binary() -> str:
    """FFMPEG_BINARY, else `ffmpeg` on PATH, else the binary shipped by imageio-ffmpeg."""
    configured = settings.FFMPEG_BINARY or os.getenv("FFMPEG_BINARY", "")
    if configured:
        if not (shutil.which(configured) or Path(configured).is_file()):
            raise FFmpegMissing(f"FFMPEG_BINARY={configured!r} does not exist")
        return shutil.which(configured) or configured
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # imageio-ffmpeg raises RuntimeError when its binary is absent
        raise FFmpegMissing(f"no ffmpeg found (FFMPEG_BINARY, PATH, imageio-ffmpeg): {exc}") from exc


def _ffmpeg(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run FFmpeg with `args`, its messages captured as text.

    It runs in a session of its own: a terminal's Ctrl-C (SIGINT to its foreground process group)
    reaches the worker, which decides what becomes of a running job, never FFmpeg in the middle of
    a conversion (which would fail the job as bad audio)."""
    return subprocess.run([ffmpeg_binary(), "-hide_banner", "-nostdin", *args], capture_output=True,
                          text=True, errors="replace", start_new_session=True, **kwargs)


def ffmpeg_version() -> str:
    out = _ffmpeg("-version", timeout=20)
    return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else ""


@dataclass(frozen=True)
class Probe:
    duration: float | None
    audio_codec: str
    has_video: bool


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
# One line of the input's stream list: "  Stream #0:1[0x2](und): Audio: aac (LC), 44100 Hz, ..."
_STREAM = re.compile(r"^\s+Stream #0:\d+\S*: (\w+): ([^,\s]*)")
# What is left of a path once the known ones are taken out of a message.
_PATH = re.compile(r"(?<![\w.])/[^\s'\":]+(?:/[^\s'\":]+)+")
GONE = "the uploaded file is no longer on the server"


def _input_report(stderr: str) -> list[str] | None:
    """The lines FFmpeg prints about the input it opened (duration, streams); None if it opened none.

    FFmpeg indents everything it reports under "Input #0, ...", in every version."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Input #0"):
            report = []
            for ln in lines[i + 1:]:
                if not ln[:1].isspace():
                    break
                report.append(ln)
            return report
    return None


def _reason(stderr: str, names: dict[Path, str], last: int = 1) -> str:
    """FFmpeg's `last` messages, for a person: each path in `names` replaced by its name, and any
    other path left out. A server's paths say nothing to a client and tell it how the server is
    laid out."""
    lines = list(dict.fromkeys(ln.strip() for ln in stderr.splitlines() if ln.strip()))
    text = " ".join(lines[-last:])[-300:] if lines else "unknown error"
    for path, name in names.items():
        text = text.replace(f"{path}: ", "").replace(str(path), name)
    return _PATH.sub("…", text)


def _require(path: Path) -> None:
    if not Path(path).is_file():
        raise AudioError(GONE)


def probe(path: Path) -> Probe:
    """Check that FFmpeg sees an audio stream in the file; raise AudioError naming the problem.

    Decided by FFmpeg's exit status and the streams it lists, never by the words of its messages,
    which change between versions ("Invalid data found" in one is "Invalid argument" in another)."""
    _require(path)
    # Open the file and its first audio stream's decoder, decode nothing: exit status 0 only if
    # all of that works.
    proc = _ffmpeg("-i", str(path), "-map", "0:a:0", "-t", "0", "-f", "null", "-", timeout=120)
    report = _input_report(proc.stderr)
    if report is None:
        _require(path)
        raise AudioError("the file is not a recognised audio or video format")
    streams = [m.groups() for m in map(_STREAM.match, report) if m]
    audio = [codec for kind, codec in streams if kind == "Audio"]
    if not audio:
        raise AudioError("the file has no audio stream")
    if proc.returncode != 0:
        reason = _reason(proc.stderr, {path: "the file"})
        raise AudioError(f"FFmpeg could not read the file's audio ({reason})")
    duration = None
    match = next(filter(None, map(_DURATION.search, report)), None)
    if match:
        h, m, s = match.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    return Probe(duration=duration, audio_codec=audio[0],
                 has_video=any(kind == "Video" for kind, _ in streams))


_TIME = re.compile(r"time=\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


def decoded_duration(path: Path, cap: float) -> float:
    """Seconds of audio the file really decodes to (up to `cap` + 1): headers can lie."""
    proc = _ffmpeg("-i", str(path), "-map", "0:a:0", "-t", str(cap + 1), "-f", "null", "-")
    times = _TIME.findall(proc.stderr)
    if not times:
        return 0.0
    h, m, s = times[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def too_long(seconds: float) -> AudioError:
    limit = settings.MAX_AUDIO_SECONDS
    return AudioError(f"the audio lasts {seconds / 3600:.1f} h, over the {limit / 3600:.1f} h limit"
                      f" (MAX_AUDIO_SECONDS={limit:.0f}); split the file")


def check_duration(path: Path, probed: Probe) -> float | None:
    """Refuse audio longer than MAX_AUDIO_SECONDS; decode to check only when the header says so."""
    limit = settings.MAX_AUDIO_SECONDS
    if not limit or probed.duration is None or probed.duration <= limit:
        return probed.duration
    real = decoded_duration(path, limit)
    if real > limit:
        raise too_long(real)
    return real


def convert(path: Path, out_path: Path) -> np.ndarray:
    """Decode the first audio stream to 16 kHz mono float32 in `out_path` and map it.

    Decoding stops just past MAX_AUDIO_SECONDS, so no file can fill the disk with samples."""
    _require(path)
    limit = settings.MAX_AUDIO_SECONDS
    cap = ["-t", str(limit + 1)] if limit else []
    proc = _ffmpeg(
        "-v", "error", "-y", "-i", str(path), *cap, "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-acodec", "pcm_f32le", str(out_path),
    )
    if proc.returncode != 0:
        _require(path)  # deleted while FFmpeg read it
        # `-v error`: only errors were printed; the last two say what failed and, often, why.
        reason = _reason(proc.stderr, {path: "the file", out_path: "the decoded audio"}, last=2)
        raise AudioError(f"FFmpeg could not decode the audio: {reason}")
    size = out_path.stat().st_size
    if size < 4:
        raise AudioError("the file contains no audio samples")
    if limit and size / 4 / SAMPLE_RATE > limit:
        out_path.unlink(missing_ok=True)
        raise too_long(size / 4 / SAMPLE_RATE)
    # A memory map keeps hours of audio out of RAM until the engine reads it.
    return np.memmap(out_path, dtype="<f4", mode="r", shape=(size // 4,))


@dataclass(frozen=True)
class Trim:
    """Which samples to keep: audio[start:end]; `offset` seconds to add back to timestamps."""

    start: int
    end: int

    @property
    def offset(self) -> float:
        return self.start / SAMPLE_RATE


def block_levels(audio: np.ndarray, hop: int, chunk_blocks: int = 5_000) -> np.ndarray:
    """RMS level (dBFS) of each `hop`-sample block, read a slice at a time so hours of memory-
    mapped audio never sit in RAM at once."""
    frames = len(audio) // hop
    levels = np.empty(frames, dtype=np.float32)
    for first in range(0, frames, chunk_blocks):
        last = min(frames, first + chunk_blocks)
        blocks = np.asarray(audio[first * hop:last * hop], dtype=np.float32).reshape(last - first, hop)
        rms = np.sqrt(np.mean(np.square(blocks, dtype=np.float64), axis=1))
        levels[first:last] = 20.0 * np.log10(np.maximum(rms, 1e-10))
    return levels


def find_speech_bounds(
    audio: np.ndarray,
    threshold_db: float,
    min_silence: float,
    window: float = 0.02,
    margin: float = 0.2,
) -> Trim:
    """Find leading/trailing runs quieter than `threshold_db` (dBFS RMS) lasting >= `min_silence` s.

    A run shorter than `min_silence` is kept, and `margin` seconds of each trimmed run are kept so
    a soft word onset is not clipped. An all-silent file gives an empty range (start == end).
    """
    n = len(audio)
    hop = max(1, int(window * SAMPLE_RATE))
    if n // hop == 0:
        return Trim(0, n)
    loud = np.flatnonzero(block_levels(audio, hop) > threshold_db)
    if loud.size == 0:
        return Trim(0, 0)
    pad = int(margin * SAMPLE_RATE)
    start = max(0, int(loud[0]) * hop - pad)
    end = min(n, (int(loud[-1]) + 1) * hop + pad)
    min_samples = int(round(min_silence * SAMPLE_RATE))
    if start < min_samples:
        start = 0
    if n - end < min_samples:
        end = n
    return Trim(start, end)


def split_points(audio: np.ndarray, start: int, end: int, window_seconds: float,
                 search_seconds: float = 15.0, block: float = 0.1) -> list[tuple[int, int]]:
    """Cut [start, end) into pieces of at most `window_seconds`, each cut at the quietest
    `block`-second stretch of the last `search_seconds` before the limit, so no word is split.

    Long audio is transcribed piece by piece: the engines hold the spectrogram of all the audio
    they are given (about 110 MB an hour), so pieces bound that for files of many hours."""
    limit = int(window_seconds * SAMPLE_RATE)
    hop = max(1, int(block * SAMPLE_RATE))
    pieces = []
    while end - start > limit:
        search_from = start + limit - int(min(search_seconds, window_seconds / 2) * SAMPLE_RATE)
        levels = block_levels(audio[search_from:start + limit], hop)
        cut = search_from + int(np.argmin(levels)) * hop if levels.size else start + limit
        cut = max(start + hop, cut)
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces
