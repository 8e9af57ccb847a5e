"""manage.py install_diarization resemblyzer|pyannote [--from-file PT | --from-dir DIR | --token T]"""
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from transcription import speakers
from transcription.speakers import store


class Command(BaseCommand):
    help = ("Install a diarization backend into MODELS_DIR. resemblyzer (the offline default): from the"
            " resemblyzer wheel requirements.txt installs. pyannote: from a pipeline folder or the hub.")

    def add_arguments(self, parser):
        parser.add_argument("backend", choices=speakers.NAMES)
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--from-file", type=Path, metavar="PT", help="resemblyzer: a pretrained.pt")
        source.add_argument("--from-dir", type=Path, metavar="DIR", help="pyannote: a pipeline folder (config.yaml)")
        source.add_argument("--token", metavar="HF_TOKEN", help=f"pyannote: download {speakers.pyannote.HUB_REPO}"
                            " from the Hugging Face hub with this token (its terms accepted)")
        parser.add_argument("--if-missing", action="store_true", help="do nothing when it is already installed")

    def handle(self, backend, from_file, from_dir, token, if_missing, **_):
        if backend == "resemblyzer" and (from_dir or token):
            raise CommandError("resemblyzer installs from its wheel or --from-file PT")
        if backend == "pyannote" and from_file:
            raise CommandError("pyannote installs from --from-dir DIR or --token HF_TOKEN")
        folder = (speakers.resemblyzer.weights_path().parent if backend == "resemblyzer"
                  else speakers.pyannote.folder())
        if if_missing and (folder / ("ge2e.npz" if backend == "resemblyzer" else "config.yaml")).is_file():
            self.stdout.write(f"{backend}: already installed at {folder}")
            return
        began = time.monotonic()
        try:
            if backend == "resemblyzer":
                path = store.install_resemblyzer(from_file)
            else:
                path = store.install_pyannote(from_dir, token)
        except (store.InstallError, OSError) as exc:
            raise CommandError(f"could not install {backend}: {exc}") from None
        note = ""
        if backend == "pyannote" and not speakers.pyannote.package_installed():
            note = " (the worker also needs: pip install pyannote.audio)"
        self.stdout.write(self.style.SUCCESS(
            f"{backend}: installed at {path} ({time.monotonic() - began:.1f} s){note}"))
