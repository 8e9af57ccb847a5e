"""Peak memory of Whisper's log-Mel spectrogram: each library's own whole-file function against
transcription/engines/melspec.py (a stretch at a time), on random audio of the given lengths.

    .venv/bin/python bench/spectrogram_memory.py --minutes 30 120

Each measurement runs in a fresh process: the audio is made and the libraries imported first, then
the rise of peak RSS (ru_maxrss) over the call is printed, with the result's own size.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = r"""
import json, resource, sys
import numpy as np
import mlx.core as mx
from mlx_whisper import audio as mlx_audio
from faster_whisper.feature_extractor import FeatureExtractor
sys.path.insert(0, {repo!r})
from transcription.engines import melspec

minutes, which = {minutes!r}, {which!r}
audio = np.random.default_rng(0).standard_normal(int(minutes * 60 * 16000), dtype=np.float32)
audio *= 0.1
extractor = FeatureExtractor(feature_size=80)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if which == "faster-whisper":
    out = extractor(audio, padding=160)
elif which == "faster-whisper, stretches":
    out = melspec.numpy_log_mel(audio, extractor.mel_filters, 160)
elif which == "mlx":
    out = mlx_audio.log_mel_spectrogram(audio, 80, padding=480000); mx.eval(out)
else:
    out = melspec.mlx_log_mel(audio, 80, padding=480000); mx.eval(out)
rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({{"minutes": minutes, "function": which, "peak_rise_mb": round(rise),
                  "result_mb": round(out.nbytes / 2**20)}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[30, 120])
    args = parser.parse_args()
    rows = []
    for minutes in args.minutes:
        for which in ("faster-whisper", "faster-whisper, stretches", "mlx", "mlx, stretches"):
            out = subprocess.run([sys.executable, "-c", PROBE.format(repo=str(REPO), minutes=minutes, which=which)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{minutes:6.0f} min  {which:26s} peak rise {rows[-1]['peak_rise_mb']:6d} MB"
                  f"  (result {rows[-1]['result_mb']} MB)", flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
