"""Scoring a transcript against exact references: WER, and the sentences it dropped (for tests and
the benchmarks alike)."""
from __future__ import annotations

import re


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (a hyphen splits)."""
    return re.sub(r"[^\w\s']", " ", text.lower().replace("-", " ")).split()


def score(hypothesis: str, sentences: list[str]) -> dict:
    """WER against the sentences joined, and those more than half deleted in the alignment."""
    import jiwer

    owner = [i for i, sentence in enumerate(sentences) for _ in words(sentence)]
    out = jiwer.process_words(" ".join(" ".join(words(s)) for s in sentences), " ".join(words(hypothesis)))
    deleted = [0] * len(sentences)
    for chunk in out.alignments[0]:
        if chunk.type == "delete":
            for index in range(chunk.ref_start_idx, chunk.ref_end_idx):
                deleted[owner[index]] += 1
    dropped = [i for i, sentence in enumerate(sentences) if deleted[i] > len(words(sentence)) / 2]
    return {"wer": round(out.wer, 4), "dropped": len(dropped),
            "dropped_sentences": [sentences[i][:40] for i in dropped]}
