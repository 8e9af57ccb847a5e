"""A diarization onto a result (worker side): every word gets the speaker whose turns overlap it
most, a segment that spans a change of speaker is split at the word where it changes, and the
speakers are listed with their speaking time, labelled SPEAKER_1, SPEAKER_2, … in order of first
word. Known voices (OpenAI's known_speaker_references) name the clusters they match."""
from __future__ import annotations

import numpy as np

from ..result import Speaker, StoredSegment, Word
from .base import Diarization, Turn, unit

# Cosine similarity above which a known voice names a cluster (measured with Resemblyzer: the same
# voice's clips 0.78-0.95, different voices 0.25-0.63 on the shared clips).
MATCH_SIMILARITY = 0.70


def match(voices: dict[int, np.ndarray], known: list[tuple[str, np.ndarray]],
          least: float = MATCH_SIMILARITY) -> dict[int, str]:
    """cluster → known name: the best one-to-one pairing by cosine similarity, each pair at least
    `least` alike; a known voice nobody resembles names nothing."""
    from scipy.optimize import linear_sum_assignment

    clusters = sorted(voices)
    if not clusters or not known:
        return {}
    a = np.stack([unit(voices[c]) for c in clusters])
    b = np.stack([unit(v) for _, v in known])
    similarity = a @ b.T
    rows, cols = linear_sum_assignment(-similarity)
    return {clusters[r]: known[c][0] for r, c in zip(rows, cols) if similarity[r, c] >= least}


def speaker_at(start: float, end: float, turns: list[Turn]) -> int | None:
    """The cluster whose turns overlap [start, end] most; if none does, the nearest turn's."""
    if not turns:
        return None
    overlap: dict[int, float] = {}
    for t in turns:
        shared = min(end, t.end) - max(start, t.start)
        if shared > 0:
            overlap[t.speaker] = overlap.get(t.speaker, 0.0) + shared
    if overlap:
        return max(overlap, key=overlap.get)
    middle = (start + end) / 2
    return min(turns, key=lambda t: min(abs(middle - t.start), abs(middle - t.end))).speaker


def label(segments: list[StoredSegment], diarization: Diarization, offset: float,
          names: dict[int, str] | None = None) -> tuple[list[StoredSegment], list[Speaker]]:
    """The segments with speakers (split where the speaker changes) and the speakers list.
    `offset`: where the diarized samples begin on the file's timeline (the trimmed silence)."""
    turns = [Turn(t.start + offset, t.end + offset, t.speaker) for t in diarization.turns]
    names = names or {}
    pieces: list[tuple[StoredSegment, list[Word], int | None, bool]] = []  # segment, words, cluster, whole
    for seg in segments:
        words = seg.words or []
        if not words:
            pieces.append((seg, [], speaker_at(seg.start, seg.end, turns), True))
            continue
        clusters = [speaker_at(w.start, w.end, turns) for w in words]
        runs: list[tuple[int | None, list[Word]]] = []
        for w, k in zip(words, clusters):
            if runs and runs[-1][0] == k:
                runs[-1][1].append(w)
            else:
                runs.append((k, [w]))
        for k, run in runs:
            pieces.append((seg, run, k, len(runs) == 1))

    ids: dict[int | None, str] = {}
    for _, _, k, _ in pieces:
        if k not in ids:
            ids[k] = f"SPEAKER_{len(ids) + 1}"
    out: list[StoredSegment] = []
    for seg, run, k, whole in pieces:
        speaker = ids[k]
        words = [w.model_copy(update={"speaker": speaker}) for w in run] or seg.words
        if whole:
            piece = seg.model_copy(update={"speaker": speaker, "words": words})
        else:  # a part of a segment: its own times and text; Whisper's tokens belong to the whole
            piece = seg.model_copy(update={
                "speaker": speaker, "words": words, "tokens": [],
                "start": round(run[0].start, 3), "end": round(run[-1].end, 3),
                "text": "".join(w.word for w in run).strip()})
        piece.id = len(out)
        out.append(piece)

    seconds: dict[str, float] = {}
    for t in turns:
        if t.speaker in ids:
            seconds[ids[t.speaker]] = seconds.get(ids[t.speaker], 0.0) + (t.end - t.start)
    counts: dict[str, int] = {}
    for seg in out:
        counts[seg.speaker] = counts.get(seg.speaker, 0) + len(seg.words or [])
    speakers = [Speaker(id=sid, name=names.get(k) if k is not None else None,
                        seconds=round(seconds.get(sid, 0.0), 3), words=counts.get(sid, 0))
                for k, sid in ids.items()]
    return out, speakers
