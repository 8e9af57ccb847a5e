"""Recordings of several real voices taking turns, built from the shared eval clips with known
turn times, and the word speaker error of a diarized result against them (tests and bench/)."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED = Path(os.getenv("SHARED_DIR", Path(__file__).resolve().parent.parent.parent / "shared"))
EVAL = SHARED / "eval"
RATE = 16_000
GAP = 0.5  # seconds of silence between turns


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


def clip(name: str, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """A shared clip as 16-kHz mono float32, seconds [start, end)."""
    from transcription.audio import ffmpeg_binary

    raw = subprocess.run([ffmpeg_binary(), "-hide_banner", "-v", "error", "-i", str(EVAL / name), "-f", "f32le",
                          "-ac", "1", "-ar", str(RATE), "-"], capture_output=True, check=True).stdout
    samples = np.frombuffer(raw, dtype="<f4")
    return samples[int(start * RATE):None if end is None else int(end * RATE)].copy()


def pieces(samples: np.ndarray, shortest: float) -> list[np.ndarray]:
    """The clip cut at its pauses (Silero VAD) into pieces of at least `shortest` seconds."""
    from transcription.engines.windows import silero_spans

    spans = silero_spans(samples)
    cuts, begin = [], 0
    for (_, end), (nxt, _) in zip(spans, spans[1:]):
        middle = (end + nxt) // 2
        if (middle - begin) / RATE >= shortest and (len(samples) - middle) / RATE >= shortest:
            cuts.append(middle)
            begin = middle
    edges = [0, *cuts, len(samples)]
    return [samples[a:b] for a, b in zip(edges, edges[1:])]


def conversation(turns: list[tuple[str, np.ndarray]], gap: float = GAP) -> tuple[np.ndarray, list[Turn]]:
    """The turns one after another with `gap` seconds of silence between them."""
    out, truth, at = [], [], 0.0
    silence = np.zeros(int(gap * RATE), dtype=np.float32)
    for i, (speaker, samples) in enumerate(turns):
        if i:
            out.append(silence)
            at += gap
        out.append(samples)
        truth.append(Turn(at, at + len(samples) / RATE, speaker))
        at += len(samples) / RATE
    return np.concatenate(out), truth


def write(samples: np.ndarray, path: Path) -> Path:
    """The samples as a file any FFmpeg reads (16-bit WAV)."""
    import wave

    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(RATE)
        fh.writeframes(pcm.tobytes())
    return path


def recordings() -> dict[str, tuple[np.ndarray, list[Turn], str]]:
    """name → (samples, true turns, language): English turns of 5 s or more (two and four
    voices), one English voice alone, and short (2-5 s) Russian turns of two voices."""
    ml = pieces(clip("multilingual.mp3", 0, 30.0), shortest=5.0)  # the English paragraph
    jfk, ls = clip("jfk.flac"), clip("en_librispeech_1995-1837-0001.wav")
    lv = clip("en_librivox_sense_and_sensibility_0870.wav")
    # The two speech-to-phrase clips are one voice (Whisper's beep at their start is kept).
    ru_a, ru_b = clip("ru_stp_kakaya_pogoda_v_nyu-yorke.wav"), clip("ru_stp_kotoryy_seychas_chas.wav")
    ru_p = clip("ru_pisets_test_sound_ru.wav")
    out = {}
    out["en-2"] = (*conversation([("reader", ml[0]), ("jfk", jfk), ("reader", np.concatenate(ml[1:]))]), "en")
    out["en-4"] = (*conversation([("reader", ml[0]), ("jfk", jfk), ("reader", ml[1]), ("librispeech", ls),
                                  ("reader", np.concatenate(ml[2:])), ("librivox", lv)]), "en")
    out["en-1"] = (*conversation([("reader", np.concatenate(ml))]), "en")
    out["ru-2"] = (*conversation([("stp", ru_a), ("pisets", ru_p), ("stp", ru_b)]), "ru")
    return out


def word_speaker_error(words: list[dict], truth: list[Turn]) -> dict:
    """The share of words whose speaker is wrong after the best one-to-one mapping of the found
    labels onto the true ones (a word's true speaker: the turn holding its middle, else the
    nearest turn), and the number of speakers found."""
    from scipy.optimize import linear_sum_assignment

    true_names = sorted({t.speaker for t in truth})
    found = sorted({w.get("speaker") or "" for w in words})
    counts = np.zeros((len(found), len(true_names)))
    for w in words:
        middle = (w["start"] + w["end"]) / 2
        turn = min(truth, key=lambda t: 0 if t.start <= middle <= t.end else min(abs(middle - t.start),
                                                                                  abs(middle - t.end)))
        counts[found.index(w.get("speaker") or ""), true_names.index(turn.speaker)] += 1
    rows, cols = linear_sum_assignment(-counts)
    right = counts[rows, cols].sum()
    total = counts.sum()
    return {"words": int(total), "error": float(1 - right / total) if total else 0.0,
            "speakers_found": len([f for f in found if f]), "speakers_true": len(true_names)}


def rotation(minutes: float) -> tuple[np.ndarray, list[Turn]]:
    """The five English voices of bench/speed_accuracy.py's reading, one clip each in a rotating
    order until `minutes`: a long recording of five speakers with turns of 3-30 s."""
    voices = [("jfk", clip("jfk.flac")), ("reader", clip("multilingual.mp3", 0, 30.0)),
              ("librispeech", clip("en_librispeech_1995-1837-0001.wav")),
              ("librivox", clip("en_librivox_sense_and_sensibility_0870.wav")), ("timit", clip("en_timit_LDC93S1.wav"))]
    turns, seconds, order = [], 0.0, 0
    while seconds < minutes * 60:
        for k in range(len(voices)):
            turns.append(voices[(order + k) % len(voices)])
            seconds += len(turns[-1][1]) / RATE + GAP
        order += 1
    return conversation(turns)


def one_channel(samples: np.ndarray, truth: list[Turn], snr_db: float, seed: int = 0) -> np.ndarray:
    """The recording as if every voice shared one channel: each turn through the same telephone
    band (300-3400 Hz) at the same level, and the same band-limited noise under all of it at
    `snr_db` below the speech. Clips from different sources differ in microphone and room, which
    helps tell voices apart; a meeting on one microphone gives no such help."""
    from scipy.signal import butter, sosfilt

    band = butter(4, [300, 3400], btype="band", fs=RATE, output="sos")
    level = 0.05
    out = np.zeros_like(samples)
    for t in truth:
        a, b = int(t.start * RATE), int(t.end * RATE)
        turn = sosfilt(band, samples[a:b])
        out[a:b] = turn / (np.sqrt(np.mean(turn ** 2)) + 1e-9) * level
    noise = sosfilt(band, np.random.default_rng(seed).standard_normal(len(samples)))
    noise *= level / np.sqrt(np.mean(noise ** 2)) / 10 ** (snr_db / 20)
    return (out + noise).astype(np.float32)


ENGLISH = ("jfk.flac", "en_librispeech_1995-1837-0001.wav", "en_librivox_sense_and_sensibility_0870.wav")


def reading(names: tuple[str, ...] = ENGLISH, rounds: int = 1, gap: float = 1.0) -> tuple[np.ndarray, str]:
    """The clips read one after another, `rounds` times, with `gap` seconds between them, and the
    exact reference text of the whole."""
    rows = [line.split("\t") for line in (EVAL / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:] if line]
    reference = {row[0]: row[-1] for row in rows}
    order = [name for _ in range(rounds) for name in names]
    samples, _ = conversation([(name, clip(name)) for name in order], gap=gap)
    return samples, " ".join(reference[name] for name in order)
