"""Stored names are safe whatever a client calls its file."""
import pytest

from transcription.uploads import ALLOWED_EXTENSIONS, UploadRejected, check_extension, safe_name


@pytest.mark.parametrize("given,expected", [
    ("jfk.flac", "jfk.flac"),
    ("../../etc/passwd.wav", "passwd.wav"),
    ("..\\..\\windows\\system32\\evil.MP3", "evil.mp3"),
    ("/abs/path/talk.ogg", "talk.ogg"),
    ("my talk (final) v2.m4a", "my_talk_final_v2.m4a"),
    ("Привет мир.wav", "Привет_мир.wav"),
    ("rm -rf $(whoami);.wav", "rm_-rf_whoami.wav"),
    ("..", "upload"),
    ("", "upload"),
    (".wav", "wav"),
    ("a\x00b\nc.wav", "a_b_c.wav"),
])
def test_safe_name_strips_paths_and_special_characters(given, expected):
    assert safe_name(given) == expected


def test_safe_name_is_bounded_and_keeps_the_extension():
    name = safe_name("x" * 500 + ".flac")
    assert len(name) <= 100 and name.endswith(".flac")


@pytest.mark.parametrize("name", ["a.WAV", "b.Mp3", "c.m4a", "d.FLAC", "e.aac", "f.ogg", "g.wma", "h.webm", "i.mp4"])
def test_spec_extensions_are_accepted_in_any_case(name):
    check_extension(name)


@pytest.mark.parametrize("name", ["a.txt", "b", "c.wav.exe", "d.mkv"])
def test_other_extensions_are_refused_with_415(name):
    with pytest.raises(UploadRejected) as exc:
        check_extension(name)
    assert exc.value.status == 415 and ", ".join(ALLOWED_EXTENSIONS) in exc.value.message
