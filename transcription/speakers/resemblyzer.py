"""The offline default: Silero VAD (faster-whisper's copy) finds speech, Resemblyzer's GE2E encoder
(speakers/ge2e.py) embeds it every STEP_FRAMES in 1.6-s stretches, and spectral clustering groups
the stretches into voices, counting them when the count is not given.

Nothing is downloaded: the encoder's weights come from the `resemblyzer` wheel on PyPI
(`manage.py install_diarization resemblyzer`, run by `make setup`)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from django.conf import settings

from . import ge2e
from .base import SAMPLE_RATE, Count, Diarization, DiarizationUnavailable, Turn, unit

STEP_FRAMES = 120  # a stretch every 1.2 s; each decides the 1.2 s around its middle
# One voice when every pair of neighbouring stretches is at least this alike (cosine): chosen on
# bench/diarization.py's recordings (README: "Speakers").
SAME_VOICE = 0.85
DISTINCT = 0.45  # average-linkage cosine distance between two voices (_linkage_count)
MIN_SHARE = 0.04  # a linkage cluster with less of the stretches than this is not counted as a voice
MAX_CLUSTERED = 1500  # more stretches (30 min of speech) are clustered from an even sample of them
BATCH = 256  # stretches embedded together (about 40 MB of LSTM inputs and states)


def weights_path() -> Path:
    return Path(settings.MODELS_DIR) / "speakers-resemblyzer" / "ge2e.npz"


@functools.lru_cache(maxsize=2)
def _encoder(path: str, mtime: float) -> ge2e.Encoder:
    return ge2e.Encoder.load(Path(path))


class Resemblyzer:
    name = "resemblyzer"
    label = "Resemblyzer GE2E + agglomerative clustering (offline, bundled)"

    def missing(self) -> str | None:
        if not weights_path().is_file():
            return "the speaker encoder is not installed; run: python manage.py install_diarization resemblyzer"
        return None

    def installed(self) -> bool:
        return self.missing() is None

    def encoder(self) -> ge2e.Encoder:
        reason = self.missing()
        if reason:
            raise DiarizationUnavailable(reason)
        path = weights_path()
        return _encoder(str(path), path.stat().st_mtime)

    def embed_voice(self, samples: np.ndarray) -> np.ndarray:
        from ..engines.windows import silero_spans

        return self.encoder().embed_voice(samples, silero_spans(samples))

    def diarize(self, samples: np.ndarray, count: Count) -> Diarization:
        from ..engines.windows import silero_spans

        encoder = self.encoder()
        spans = [(a // ge2e.HOP, b // ge2e.HOP) for a, b in silero_spans(samples)]
        spans = [(a, b) for a, b in spans if b > a]
        if not spans:
            return Diarization(turns=[])
        samples = ge2e.raise_volume(samples, [(a * ge2e.HOP, b * ge2e.HOP) for a, b in spans])
        embeddings, owners, pending = [], [], []  # owners: per stretch, the frames [a, b) it decides
        for a, b in spans:
            starts, decides = _stretches(a, b)
            first = starts[0]
            last = max(starts) + ge2e.PARTIAL_FRAMES
            mel = ge2e.power_mel(samples[first * ge2e.HOP:last * ge2e.HOP], encoder.filters)
            pending.append(ge2e.stretches(mel, [s - first for s in starts]))
            owners.extend(decides)
            if sum(len(p) for p in pending) >= BATCH:  # many spans' stretches in one batch
                embeddings.append(encoder.embed(np.concatenate(pending)))
                pending = []
        if pending:
            embeddings.append(encoder.embed(np.concatenate(pending)))
        vectors = np.concatenate(embeddings)
        labels = cluster(vectors, count)
        return _turns(owners, labels, vectors)


def _stretches(a: int, b: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Where the stretches of speech [a, b) (in frames) begin, and the frames each decides: a
    short span gets one stretch centred on it; a longer one, a stretch every STEP_FRAMES, each
    deciding the STEP_FRAMES around its middle (the first and last reach the span's ends)."""
    size = ge2e.PARTIAL_FRAMES
    if b - a <= size:
        return [max(0, (a + b - size) // 2)], [(a, b)]
    starts = list(range(a, b - size + 1, STEP_FRAMES))
    if starts[-1] + size < b:
        starts.append(b - size)
    middles = [s + size // 2 for s in starts]
    edges = [a] + [(m1 + m2) // 2 for m1, m2 in zip(middles, middles[1:])] + [b]
    return starts, list(zip(edges, edges[1:]))


def cluster(vectors: np.ndarray, count: Count) -> np.ndarray:
    """A voice (0, 1, …) per embedding: spectral clustering (Google's `spectralcluster`, the method
    of "Speaker Diarization with LSTM", Wang et al. 2018, built for these GE2E embeddings), the count
    from the eigengap within the count's bounds, or exactly the given count; then each embedding is
    moved to its nearest voice's mean once."""
    n = len(vectors)
    low, high = count.bounds(n)
    if n == 1 or high <= 1:
        return np.zeros(n, dtype=int)
    if n > MAX_CLUSTERED:  # the affinity matrix grows with n²: cluster a sample, place the rest
        every = -(-n // MAX_CLUSTERED)
        sample = cluster(vectors[::every], count)
        return _nearest(vectors, _means(vectors[::every], sample))
    labels = np.asarray(_spectral(low, high).predict(vectors))
    if count.num is None:  # each count is an underestimate in its own conditions: take the larger
        found = len(set(labels.tolist()))
        linked = _linkage(vectors, low, high)
        if len(set(linked.tolist())) > found:
            labels = linked
    moved = _nearest(vectors, _means(vectors, labels))
    return moved if len(set(moved.tolist())) >= low else labels


def _linkage(vectors: np.ndarray, low: int, high: int) -> np.ndarray:
    """Average-linkage clustering cut at cosine distance DISTINCT (within [low, high]), clusters with
    under MIN_SHARE of the stretches folded into their nearest: right on recordings whose voices each
    come with their own microphone and room, where the eigengap can miss a voice heard only in
    short turns; too few voices when all share one channel and its noise."""
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(vectors, method="average", metric="cosine")
    labels = fcluster(tree, DISTINCT, criterion="distance")
    if not low <= len(set(labels)) <= high:
        labels = fcluster(tree, min(max(len(set(labels)), low), high), criterion="maxclust")
    while len(set(labels.tolist())) > max(1, low):
        sizes = {k: int((labels == k).sum()) for k in set(labels.tolist())}
        smallest = min(sizes, key=sizes.get)
        if sizes[smallest] >= MIN_SHARE * len(labels):
            break
        means = _means(vectors, labels)
        others = {k: v for k, v in means.items() if k != smallest}
        labels = np.where(labels == smallest, _nearest(means[smallest][None], others)[0], labels)
    return labels


def _nearest(vectors: np.ndarray, means: dict[int, np.ndarray]) -> np.ndarray:
    keys = sorted(means)
    return np.asarray(keys)[np.argmax(vectors @ np.stack([means[k] for k in keys]).T, axis=1)]


def _spectral(low: int, high: int):
    """The library's TurnToDiarize refinement (percentile thresholding, binarised, auto-tuned)
    with its single-speaker check: one voice when neighbouring stretches are all alike."""
    from spectralcluster import configs, fallback_clusterer

    refinement = configs.RefinementOptions(
        thresholding_soft_multiplier=0.01, thresholding_type=configs.ThresholdType.Percentile,
        thresholding_with_binarization=True, thresholding_preserve_diagonal=True,
        symmetrize_type=configs.SymmetrizeType.Average,
        refinement_sequence=configs.TURNTODIARIZE_REFINEMENT_SEQUENCE)
    autotune = configs.AutoTune(p_percentile_min=0.40, p_percentile_max=0.95, init_search_step=0.05, search_level=1)
    fallback = fallback_clusterer.FallbackOptions(
        spectral_min_embeddings=3, single_cluster_condition=fallback_clusterer.SingleClusterCondition.NeighborAffinity,
        single_cluster_affinity_threshold=SAME_VOICE)
    return configs.SpectralClusterer(
        min_clusters=low, max_clusters=high, refinement_options=refinement, autotune=autotune,
        fallback_options=fallback, laplacian_type=configs.LaplacianType.GraphCut, row_wise_renorm=True)


def _means(vectors: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    return {k: unit(vectors[labels == k].mean(axis=0)) for k in sorted(set(labels.tolist()))}


def _turns(owners: list[tuple[int, int]], labels: np.ndarray, vectors: np.ndarray) -> Diarization:
    """Runs of one voice, numbered in order of first speech; touching runs of a voice join."""
    order: dict[int, int] = {}
    for k in labels.tolist():
        order.setdefault(k, len(order))
    turns: list[Turn] = []
    for (a, b), k in zip(owners, labels.tolist()):
        speaker = order[k]
        start, end = a * ge2e.HOP / SAMPLE_RATE, b * ge2e.HOP / SAMPLE_RATE
        if turns and turns[-1].speaker == speaker and start - turns[-1].end < 1e-6:
            turns[-1] = Turn(turns[-1].start, end, speaker)
        else:
            turns.append(Turn(start, end, speaker))
    voices = {order[k]: v for k, v in _means(vectors, labels).items()}
    return Diarization(turns=turns, voices=voices)
