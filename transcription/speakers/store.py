"""Installing the diarization backends into MODELS_DIR, staged and renamed into place as models
are (readers never see half a folder):

- `speakers-resemblyzer/ge2e.npz`: the GE2E encoder's tensors, read from the `resemblyzer` wheel
  (installed without its dependencies by `make venv`; requirements.txt says why) or a given
  `pretrained.pt`.
- `speakers-pyannote/`: a pyannote speaker-diarization pipeline folder (config.yaml and the models
  it names), copied from a folder or downloaded from the Hugging Face hub with a token."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np

from .. import modelstore
from . import ge2e, pyannote, resemblyzer


class InstallError(Exception):
    pass


def bundled_checkpoint() -> Path:
    """resemblyzer/pretrained.pt of the installed wheel (found without importing the package,
    which would import PyTorch)."""
    found = importlib.util.find_spec("resemblyzer")
    if found is None or not found.submodule_search_locations:
        raise InstallError("the resemblyzer package is not installed; run: make venv"
                           " (or pip install --no-deps resemblyzer==0.1.4)")
    return Path(next(iter(found.submodule_search_locations))) / "pretrained.pt"


def install_resemblyzer(checkpoint: Path | None = None) -> Path:
    checkpoint = Path(checkpoint) if checkpoint else bundled_checkpoint()
    if not checkpoint.is_file():
        raise InstallError(f"{checkpoint.name}: no such file")
    try:
        tensors = ge2e.read_torch_legacy(checkpoint)
        kept = {k: v for k, v in tensors.items() if k.startswith(("lstm.", "linear."))}
        ge2e.Encoder(kept)  # every tensor the encoder needs is there
    except ge2e.WeightsError as exc:
        raise InstallError(str(exc)) from None
    target = resemblyzer.weights_path()
    root = modelstore.staging_root("speakers-resemblyzer")
    try:
        np.savez(root / target.name, **kept)
        return modelstore.swap_into_place(root, target.parent)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def install_pyannote(source: Path | None = None, token: str | None = None, repo: str = pyannote.HUB_REPO) -> Path:
    """From a pipeline folder (config.yaml at its top), or from the hub with a token."""
    if source is None and not token:
        raise InstallError("give --from-dir DIR (a pyannote pipeline folder with config.yaml) or --token HF_TOKEN")
    root = modelstore.staging_root("speakers-pyannote")
    try:
        if source is not None:
            source = Path(source)
            if not (source / "config.yaml").is_file():
                raise InstallError(f"{source.name or source}: not a pyannote pipeline folder (no config.yaml)")
            shutil.copytree(source, root, dirs_exist_ok=True)
        else:
            _download(repo, token, root)
        return modelstore.swap_into_place(root, pyannote.folder())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _download(repo: str, token: str, root: Path) -> None:
    """The pipeline and the two models its config names, with the config pointed at the local
    copies so that loading it needs neither the hub nor the token again."""
    import yaml
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        snapshot_download(repo_id=repo, local_dir=root, token=token)
        config = yaml.safe_load((root / "config.yaml").read_text())
        params = config.get("pipeline", {}).get("params", {})
        for key in ("segmentation", "embedding"):
            name = params.get(key)
            if isinstance(name, str) and name.count("/") == 1 and not Path(name).exists():
                local = root / name.replace("/", "--")
                snapshot_download(repo_id=name, local_dir=local, token=token)
                params[key] = str(local / "pytorch_model.bin")
        (root / "config.yaml").write_text(yaml.safe_dump(config))
    except LocalEntryNotFoundError:
        raise InstallError("the Hugging Face hub cannot be reached from here; download the pipeline elsewhere"
                           " and install it with --from-dir") from None
    except HfHubHTTPError as exc:
        raise InstallError(f"the hub refused {repo}: {str(exc).splitlines()[0]} (accept its terms on"
                           " huggingface.co with the token's account)") from None
    except OSError as exc:
        raise InstallError(f"download failed: {exc}") from None
