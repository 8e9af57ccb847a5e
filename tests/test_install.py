"""What `make venv` installs: what the service needs, and on Linux no PyTorch or CUDA wheels.

mlx-whisper declares torch; on an ordinary Linux box pip takes its CUDA build (torch, triton and
the nvidia-* wheels: several GB) for the mlx engine's CPU fallback, which never imports it. The
Makefile installs mlx-whisper with --no-deps (requirements.txt says why)."""
import importlib
import importlib.metadata
import pkgutil
import re
import sys

import pytest

from tests.conftest import REPO


def _installed() -> set[str]:
    return {(dist.metadata["Name"] or "").lower() for dist in importlib.metadata.distributions()}


@pytest.mark.skipif(sys.platform != "linux", reason="on macOS torch has no CUDA build to pull in")
def test_linux_venv_has_no_torch_and_no_cuda_wheels():
    heavy = sorted(n for n in _installed() if n in ("torch", "triton") or n.startswith("nvidia-"))
    assert not heavy, f"installed without a feature that needs them: {heavy}"


def test_mlx_whisper_is_the_version_requirements_txt_pins():
    pins = re.findall(r"^#no-deps mlx-whisper==(\S+)$", (REPO / "requirements.txt").read_text(), re.M)
    assert pins == [importlib.metadata.version("mlx-whisper")]


def test_every_module_of_mlx_whisper_imports_without_its_undeclared_dependencies():
    """Installed with --no-deps: what it imports must come from requirements.txt. Only its
    PyTorch checkpoint converter needs torch, and the service never uses it."""
    pytest.importorskip("mlx.core", reason="MLX runs on Apple Silicon and Linux")
    import mlx_whisper

    for module in pkgutil.iter_modules(mlx_whisper.__path__):
        if module.name != "torch_whisper":
            importlib.import_module(f"mlx_whisper.{module.name}")
