"""Convert a CTranslate2 Whisper model directory into the layout mlx-whisper loads.

faster-whisper ships Whisper models in the CTranslate2 format (``model.bin`` plus
``config.json``, ``tokenizer.json`` and ``vocabulary.txt``).  mlx-whisper expects a
directory holding ``config.json`` (the :class:`mlx_whisper.whisper.ModelDimensions`
fields plus ``"model_type": "whisper"``) and ``weights.safetensors`` (or
``weights.npz``) whose names match the parameters of :class:`mlx_whisper.whisper.Whisper`.
This module lets the service run the very same bundled weights on either engine.

The output is checked against the mlx model itself: every parameter of a freshly built
``Whisper(ModelDimensions(...))`` must be produced with the right shape, and every
CTranslate2 variable must be consumed, otherwise :class:`ConversionError` is raised.

Alignment heads (used by word timestamps) cannot go into mlx's ``config.json``
(``load_model`` passes every key but ``model_type``/``quantization`` to
``ModelDimensions``, so an extra key crashes it).  ``Whisper.alignment_heads`` is however
a plain ``mx.array`` attribute, i.e. a *parameter* of the module, so it is saved as the
weight ``"alignment_heads"`` (int64, shape ``(n, 2)`` of ``(layer, head)`` rows) and
``model.update()`` inside ``load_model`` replaces the default "last half of the decoder"
heads with it.
"""

from __future__ import annotations

import argparse
import json
import math
import mmap
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ConversionError",
    "read_ct2_model",
    "convert_ct2_to_mlx",
    "SUPPORTED_OUTPUT_DTYPES",
]

#: CTranslate2 binary format versions whose layout this reader understands
#: (versions >= 4 store an explicit dtype id and a byte count per variable).
SUPPORTED_BINARY_VERSIONS = range(4, 7)
#: Newest ``WhisperSpec`` revision this converter knows.
MAX_WHISPER_SPEC_REVISION = 3
#: Values accepted for ``convert_ct2_to_mlx(dtype=...)``.
SUPPORTED_OUTPUT_DTYPES = ("float16", "float32", "bfloat16")

# CTranslate2 DataType enum (include/ctranslate2/types.h); bfloat16 is read as raw
# uint16 and widened to float32 because numpy has no bfloat16.
_CT2_DTYPES: dict[int, tuple[str, np.dtype]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", np.dtype("<u2")),
}

# ctranslate2.specs.common_spec.Activation.GELU (exact erf GELU, what mlx uses).
_CT2_ACTIVATION_GELU = 3
# Decoder flags that change the maths; mlx-whisper only implements these values.
_REQUIRED_DECODER_FLAGS = {
    "decoder/activation": _CT2_ACTIVATION_GELU,
    "decoder/pre_norm": 1,
    "decoder/alibi": 0,
    "decoder/scale_embeddings": 0,
    "decoder/start_from_zero_embedding": 0,
}
# Scalars CTranslate2 stores for its own decoding features, or that only matter when
# ALiBi is on (checked off above); irrelevant to mlx.  Newer CTranslate2 versions write
# the ALiBi ones, older ones (e.g. the bundled tiny.en) do not.
_IGNORED_SCALARS = (
    "decoder/alignment_heads",
    "decoder/alignment_layer",
    "decoder/alibi_use_positive_positions",
    "decoder/scale_alibi",
)

_LAYER_RE = re.compile(r"^(encoder|decoder)/layer_(\d+)/")
_MODEL_FILES = ("config.json", "weights.safetensors", "weights.npz")


class ConversionError(ValueError):
    """The input is not a CTranslate2 Whisper model this converter can turn into MLX."""


# --------------------------------------------------------------------------- reading


class _Cursor:
    """Bounds-checked little-endian reader over a memory map."""

    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def _need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.buf):
            raise ConversionError(
                f"{self.path}: truncated CTranslate2 file (needed {n} bytes for {what} "
                f"at offset {self.pos}, file has {len(self.buf)} bytes)"
            )

    def unpack(self, fmt: str, what: str) -> int:
        size = struct.calcsize("<" + fmt)
        self._need(size, what)
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self, what: str) -> str:
        length = self.unpack("H", f"length of {what}")
        self._need(length, what)
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        if raw.endswith(b"\0"):
            raw = raw[:-1]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConversionError(f"{self.path}: {what} is not valid UTF-8: {raw[:40]!r}") from exc

    def array(self, dtype: np.dtype, shape: tuple[int, ...], nbytes: int, what: str) -> np.ndarray:
        self._need(nbytes, what)
        arr = np.frombuffer(self.buf, dtype=dtype, count=nbytes // dtype.itemsize, offset=self.pos)
        self.pos += nbytes
        return arr.reshape(shape)


def _model_bin(path: Path) -> Path:
    path = Path(path)
    return path / "model.bin" if path.is_dir() else path


def read_ct2_model(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse a CTranslate2 ``model.bin`` (or the directory holding it).

    Used to get at the raw CTranslate2 variables without CTranslate2 itself.  Returns
    ``(variables, aliases)``: ``variables`` maps each variable name (e.g.
    ``"encoder/conv1/weight"``) to a read-only numpy array that is a zero-copy
    ``np.frombuffer`` view on a memory map of the file (the map stays alive as long as
    any array does); rank-0 variables are 0-d arrays.  bfloat16 variables are the only
    exception: numpy has no bfloat16, so they are widened to float32 copies.  ``aliases``
    maps alias names to the variable they share storage with (CTranslate2 writes
    ``decoder/projection/weight -> decoder/embeddings/weight`` for Whisper).

    Raises :class:`ConversionError` if the file is missing, is not a ``WhisperSpec``
    model, uses an unsupported binary version / spec revision / dtype, is truncated, has
    inconsistent sizes or trailing bytes.
    """
    path = _model_bin(path)
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise ConversionError(f"{path}: empty file, not a CTranslate2 model")
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError as exc:
        raise ConversionError(f"{path}: no CTranslate2 model.bin here") from exc

    cur = _Cursor(buf, path)
    version = cur.unpack("I", "binary version")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise ConversionError(
            f"{path}: unsupported CTranslate2 binary version {version} "
            f"(supported: {SUPPORTED_BINARY_VERSIONS.start}..{SUPPORTED_BINARY_VERSIONS.stop - 1})"
        )
    spec = cur.string("spec name")
    if spec != "WhisperSpec":
        raise ConversionError(f"{path}: model spec is {spec!r}, expected 'WhisperSpec'")
    revision = cur.unpack("I", "spec revision")
    if not 1 <= revision <= MAX_WHISPER_SPEC_REVISION:
        raise ConversionError(
            f"{path}: unsupported WhisperSpec revision {revision} "
            f"(supported up to {MAX_WHISPER_SPEC_REVISION})"
        )

    variables: dict[str, np.ndarray] = {}
    count = cur.unpack("I", "variable count")
    for index in range(count):
        name = cur.string(f"name of variable #{index}")
        rank = cur.unpack("B", f"rank of {name}")
        shape = tuple(cur.unpack("I", f"dimension of {name}") for _ in range(rank))
        type_id = cur.unpack("B", f"dtype of {name}")
        if type_id not in _CT2_DTYPES:
            raise ConversionError(f"{path}: variable {name!r} has unknown dtype id {type_id}")
        dtype_name, np_dtype = _CT2_DTYPES[type_id]
        nbytes = cur.unpack("I", f"byte count of {name}")
        expected = math.prod(shape) * np_dtype.itemsize
        if nbytes != expected:
            raise ConversionError(
                f"{path}: variable {name!r} {dtype_name}{list(shape)} should hold "
                f"{expected} bytes, header says {nbytes}"
            )
        if name in variables:
            raise ConversionError(f"{path}: duplicate variable {name!r}")
        arr = cur.array(np_dtype, shape, nbytes, f"data of {name}")
        if dtype_name == "bfloat16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        variables[name] = arr

    aliases: dict[str, str] = {}
    count = cur.unpack("I", "alias count")
    for index in range(count):
        alias = cur.string(f"alias #{index}")
        aliases[alias] = cur.string(f"target of alias {alias!r}")

    if cur.pos != len(buf):
        raise ConversionError(
            f"{path}: {len(buf) - cur.pos} unexpected trailing bytes after the alias table"
        )
    return variables, aliases


# ------------------------------------------------------------------------ conversion


def _dequantize(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Undo CTranslate2 int8/int16 weight quantization (``w = q / weight_scale``)."""
    out = dict(variables)
    for scale_name in [n for n in variables if n.endswith("/weight_scale")]:
        weight_name = scale_name[: -len("_scale")]
        if weight_name not in variables:
            raise ConversionError(f"{scale_name!r} has no matching {weight_name!r}")
        q, scale = variables[weight_name], variables[scale_name].astype(np.float32)
        if q.dtype.kind != "i":
            raise ConversionError(f"{weight_name!r} has a scale but is {q.dtype}, not an integer type")
        if scale.ndim == 0:  # int16: one scale for the whole matrix
            out[weight_name] = q.astype(np.float32) / scale
        elif scale.ndim == 1 and scale.shape[0] == q.shape[0]:  # int8: one scale per output row
            out[weight_name] = q.astype(np.float32) / scale.reshape((-1,) + (1,) * (q.ndim - 1))
        else:
            raise ConversionError(f"{scale_name!r} shape {scale.shape} does not fit {q.shape}")
        del out[scale_name]
    return out


def _resolve_aliases(variables: dict[str, np.ndarray], aliases: dict[str, str]) -> dict[str, np.ndarray]:
    out = dict(variables)
    for alias in aliases:
        target, seen = aliases[alias], {alias}
        while target in aliases and target not in variables:
            if target in seen:
                raise ConversionError(f"alias cycle through {alias!r}")
            seen.add(target)
            target = aliases[target]
        if target not in variables:
            raise ConversionError(f"alias {alias!r} points to missing variable {target!r}")
        if alias in variables:
            raise ConversionError(f"{alias!r} is both a variable and an alias")
        out[alias] = variables[target]
    return out


def _layer_count(names: set[str], side: str) -> int:
    indices = {int(m.group(2)) for n in names if (m := _LAYER_RE.match(n)) and m.group(1) == side}
    if not indices:
        raise ConversionError(f"no {side} layers found")
    if indices != set(range(len(indices))):
        raise ConversionError(f"{side} layer indices are not contiguous: {sorted(indices)}")
    return len(indices)


def _scalar(take, name: str) -> int:
    value = take(name)
    if value.size != 1:
        raise ConversionError(f"{name!r} should be a scalar, has shape {value.shape}")
    return int(value.reshape(()))


def _sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> np.ndarray:
    """Numpy twin of ``mlx_whisper.whisper.sinusoids`` (the encoder's fixed positions)."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = np.exp(-increment * np.arange(channels // 2, dtype=np.float64))
    scaled = np.arange(length, dtype=np.float64)[:, None] * inv[None, :]
    return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1)


def _map_to_mlx(
    variables: dict[str, np.ndarray], aliases: dict[str, str], ct2_config: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Rename/reshape CTranslate2 variables into mlx-whisper parameters (numpy, any float)."""
    v = _resolve_aliases(_dequantize(variables), aliases)
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in v:
            raise ConversionError(f"missing CTranslate2 variable {name!r}")
        used.add(name)
        return v[name]

    out: dict[str, np.ndarray] = {}

    def linear(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}/weight")
        out[f"{dst}.bias"] = take(f"{src}/bias")

    def layer_norm(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}/gamma")
        out[f"{dst}.bias"] = take(f"{src}/beta")

    def split(src: str, dsts: list[str], n_state: int) -> None:
        # Fused projections are stacked along the output dim.  The key projection has
        # no bias in Whisper (CTranslate2 stores zeros there); a key bias only adds a
        # per-query constant to the attention logits, which softmax cancels, so it is
        # dropped without changing the model.
        weight, bias = take(f"{src}/weight"), take(f"{src}/bias")
        if weight.shape != (n_state * len(dsts), n_state) or bias.shape != (n_state * len(dsts),):
            raise ConversionError(f"{src!r} has shape {weight.shape}/{bias.shape}, not a fused {dsts}")
        for i, dst in enumerate(dsts):
            out[f"{dst}.weight"] = weight[i * n_state : (i + 1) * n_state]
            if not dst.endswith(".key"):
                out[f"{dst}.bias"] = bias[i * n_state : (i + 1) * n_state]

    names = set(v)
    n_audio_layer = _layer_count(names, "encoder")
    n_text_layer = _layer_count(names, "decoder")

    # ---- encoder
    conv1 = take("encoder/conv1/weight")
    if conv1.ndim != 3 or conv1.shape[2] != 3:
        raise ConversionError(f"encoder/conv1/weight has shape {conv1.shape}, expected (state, n_mels, 3)")
    n_audio_state, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    for conv in ("conv1", "conv2"):
        # CTranslate2 (out, in, kernel) -> mlx Conv1d (out, kernel, in)
        out[f"encoder.{conv}.weight"] = take(f"encoder/{conv}/weight").transpose(0, 2, 1)
        out[f"encoder.{conv}.bias"] = take(f"encoder/{conv}/bias")

    n_audio_ctx = 1500  # 30 s of audio -> 3000 mel frames -> stride-2 conv
    if "encoder/position_encodings/encodings" in v:
        enc_pos = take("encoder/position_encodings/encodings")
        n_audio_ctx = int(enc_pos.shape[0])
        # mlx-whisper recomputes these sinusoids instead of loading them, so make sure
        # they are the same ones (tolerance covers float16 storage).
        err = float(np.max(np.abs(enc_pos.astype(np.float64) - _sinusoids(*enc_pos.shape))))
        if err > 1e-2:
            raise ConversionError(f"encoder position encodings are not Whisper sinusoids (max error {err:.3g})")

    for i in range(n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        split(f"{src}/self_attention/linear_0", [f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"], n_audio_state)
        linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        layer_norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        linear(f"{src}/ffn/linear_0", f"{dst}.mlp1")
        linear(f"{src}/ffn/linear_1", f"{dst}.mlp2")
        layer_norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
    layer_norm("encoder/layer_norm", "encoder.ln_post")
    n_audio_head = _scalar(take, "encoder/num_heads")

    # ---- decoder
    embeddings = take("decoder/embeddings/weight")
    n_vocab, n_text_state = (int(d) for d in embeddings.shape)
    out["decoder.token_embedding.weight"] = embeddings
    # mlx ties the output projection to the token embedding (Embedding.as_linear).
    projection = take("decoder/projection/weight")
    if projection is not embeddings and not np.array_equal(projection, embeddings):
        raise ConversionError("decoder/projection/weight differs from the token embedding (untied output layer)")
    if "decoder/projection/bias" in v and np.any(take("decoder/projection/bias")):
        raise ConversionError("decoder/projection/bias is non-zero; mlx-whisper has no output bias")
    positional = take("decoder/position_encodings/encodings")
    n_text_ctx = int(positional.shape[0])
    out["decoder.positional_embedding"] = positional

    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        split(f"{src}/self_attention/linear_0", [f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"], n_text_state)
        linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        layer_norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        split(f"{src}/attention/linear_1", [f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"], n_text_state)
        linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
        layer_norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        linear(f"{src}/ffn/linear_0", f"{dst}.mlp1")
        linear(f"{src}/ffn/linear_1", f"{dst}.mlp2")
        layer_norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
    layer_norm("decoder/layer_norm", "decoder.ln")
    n_text_head = _scalar(take, "decoder/num_heads")

    for name, required in _REQUIRED_DECODER_FLAGS.items():
        if name in v and _scalar(take, name) != required:
            raise ConversionError(f"{name} = {int(v[name])}, mlx-whisper only supports {required}")
    for name in _IGNORED_SCALARS:
        if name in v:
            take(name)

    leftovers = sorted(set(v) - used)
    if leftovers:
        raise ConversionError(f"unexpected CTranslate2 variables (not a standard Whisper model?): {leftovers[:10]}")

    dims = dict(
        n_mels=n_mels,
        n_audio_ctx=n_audio_ctx,
        n_audio_state=n_audio_state,
        n_audio_head=n_audio_head,
        n_audio_layer=n_audio_layer,
        n_vocab=n_vocab,
        n_text_ctx=n_text_ctx,
        n_text_state=n_text_state,
        n_text_head=n_text_head,
        n_text_layer=n_text_layer,
    )
    for state, heads, side in ((n_audio_state, n_audio_head, "encoder"), (n_text_state, n_text_head, "decoder")):
        if heads <= 0 or state % heads:
            raise ConversionError(f"{side} width {state} is not divisible by {heads} heads")

    out["alignment_heads"] = _alignment_heads(ct2_config, n_text_layer, n_text_head)
    return out, dims


def _alignment_heads(ct2_config: dict[str, Any], n_layer: int, n_head: int) -> np.ndarray:
    """``(layer, head)`` rows from the CT2 config, else mlx-whisper's default (last half)."""
    heads = ct2_config.get("alignment_heads")
    if not heads:
        mask = np.zeros((n_layer, n_head), dtype=bool)
        mask[n_layer // 2 :] = True
        return np.asarray(mask.nonzero()).T.astype(np.int64)
    try:
        arr = np.asarray(heads, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"config.json alignment_heads is malformed: {heads!r}") from exc
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ConversionError(f"config.json alignment_heads must be [layer, head] pairs, got shape {arr.shape}")
    if (arr < 0).any() or (arr[:, 0] >= n_layer).any() or (arr[:, 1] >= n_head).any():
        raise ConversionError(
            f"config.json alignment_heads {heads} out of range for {n_layer} layers x {n_head} heads"
        )
    return arr


def _check_tokenizer(ct2_config: dict[str, Any], n_vocab: int) -> None:
    """mlx-whisper uses its bundled tokenizer, so the language token ids must agree."""
    lang_ids = ct2_config.get("lang_ids")
    if n_vocab < 51865 or not lang_ids:  # English-only models have no language tokens
        return
    from mlx_whisper.tokenizer import get_tokenizer

    num_languages = n_vocab - 51765 - 1
    tokenizer = get_tokenizer(True, num_languages=num_languages)
    if sorted(lang_ids) != sorted(tokenizer.all_language_tokens):
        raise ConversionError(
            f"language token ids in config.json ({len(lang_ids)} ids) do not match mlx-whisper's "
            f"tokenizer for a {n_vocab}-token vocabulary ({num_languages} languages)"
        )


def _check_against_mlx(weights: dict[str, Any], dims: dict[str, int]) -> None:
    """Every parameter of the mlx model must be produced, with its exact shape, and nothing else."""
    from mlx.utils import tree_flatten
    from mlx_whisper.whisper import ModelDimensions, Whisper

    # Construction is lazy in MLX (nothing is evaluated), so this is cheap even for large-v3.
    expected = {k: tuple(p.shape) for k, p in tree_flatten(Whisper(ModelDimensions(**dims)).parameters())}
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise ConversionError(f"converted weights do not match mlx-whisper: missing {missing[:10]}, extra {extra[:10]}")
    for name, shape in expected.items():
        if name == "alignment_heads":  # any number of rows is fine
            continue
        if tuple(weights[name].shape) != shape:
            raise ConversionError(f"{name}: converted shape {tuple(weights[name].shape)} != mlx shape {shape}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(tmp_dir: Path, out_dir: Path) -> None:
    """Move the finished ``tmp_dir`` to ``out_dir`` with renames only."""
    if not out_dir.exists():
        os.rename(tmp_dir, out_dir)
    else:
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a directory")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in _MODEL_FILES)
        if foreign:
            raise FileExistsError(
                f"{out_dir} exists and holds files other than an MLX model ({foreign[:5]}); refusing to replace it"
            )
        # Swap: the old model stays complete until the new one is in place.
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.rename(out_dir, old / "model")
        os.rename(tmp_dir, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    try:
        _fsync(out_dir.parent)
    except OSError:  # some filesystems / platforms cannot fsync a directory
        pass


def convert_ct2_to_mlx(ct2_dir: Path, out_dir: Path, dtype: str = "float16") -> dict:
    """Convert the CTranslate2 Whisper model in ``ct2_dir`` into an mlx-whisper model in ``out_dir``.

    Writes ``out_dir/config.json`` (ModelDimensions fields + ``"model_type": "whisper"``)
    and ``out_dir/weights.safetensors`` (float weights cast to ``dtype``, one of
    ``"float16"``, ``"float32"``, ``"bfloat16"``; int8/int16-quantized CTranslate2
    weights are dequantized first).  The alignment heads from ``ct2_dir/config.json``
    are stored as the int64 weight ``"alignment_heads"`` so that
    ``mlx_whisper.load_models.load_model(out_dir)`` uses them for word timestamps.

    The model is built in a temporary directory beside ``out_dir`` and renamed into
    place, so a crash never leaves a half-written model at ``out_dir``.  An existing
    ``out_dir`` is replaced only if it holds nothing but a previous MLX model
    (``config.json``/``weights.*``); otherwise :class:`FileExistsError` is raised.

    Returns the config dict written to ``config.json``.  Raises :class:`ConversionError`
    (a ``ValueError``) when ``ct2_dir`` is not a convertible CTranslate2 Whisper model.
    """
    import mlx.core as mx

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    if dtype not in SUPPORTED_OUTPUT_DTYPES:
        raise ConversionError(f"unsupported output dtype {dtype!r}; choose one of {SUPPORTED_OUTPUT_DTYPES}")
    target = getattr(mx, dtype)

    ct2_config: dict[str, Any] = {}
    config_path = ct2_dir / "config.json"
    if config_path.exists():
        try:
            ct2_config = json.loads(config_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConversionError(f"{config_path}: not valid JSON: {exc}") from exc
        if not isinstance(ct2_config, dict):
            raise ConversionError(f"{config_path}: expected a JSON object")

    variables, aliases = read_ct2_model(ct2_dir / "model.bin")
    weights_np, dims = _map_to_mlx(variables, aliases, ct2_config)
    _check_against_mlx(weights_np, dims)
    _check_tokenizer(ct2_config, dims["n_vocab"])

    weights: dict[str, mx.array] = {}
    for name, arr in weights_np.items():
        if name == "alignment_heads":
            weights[name] = mx.array(arr)
        else:
            weights[name] = mx.array(np.ascontiguousarray(arr)).astype(target)
    del weights_np, variables

    config = {"model_type": "whisper", **dims}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        weights_path = tmp_dir / "weights.safetensors"
        mx.save_safetensors(
            str(weights_path),
            weights,
            metadata={"format": "mlx", "source": "ctranslate2 WhisperSpec", "dtype": dtype},
        )
        del weights
        (tmp_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        for name in ("weights.safetensors", "config.json"):
            _fsync(tmp_dir / name)
        os.chmod(tmp_dir, 0o755)  # mkdtemp creates 0700
        _install(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return config


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: ``python -m transcription.ct2convert CT2_DIR OUT_DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ct2_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dtype", default="float16", choices=SUPPORTED_OUTPUT_DTYPES)
    args = parser.parse_args(argv)
    try:
        config = convert_ct2_to_mlx(args.ct2_dir, args.out_dir, args.dtype)
    except ConversionError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(json.dumps(config))


if __name__ == "__main__":
    main()
