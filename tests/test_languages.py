"""The service's copy of Whisper's language table matches both engines' own."""
import pytest

from transcription.languages import LANGUAGES, TO_LANGUAGE_CODE, normalise_language


def test_language_table_matches_the_engines():
    from faster_whisper.tokenizer import _LANGUAGE_CODES
    from mlx_whisper.tokenizer import LANGUAGES as MLX_LANGUAGES
    from mlx_whisper.tokenizer import TO_LANGUAGE_CODE as MLX_TO_CODE

    assert LANGUAGES == MLX_LANGUAGES
    assert set(LANGUAGES) == set(_LANGUAGE_CODES)
    assert TO_LANGUAGE_CODE == MLX_TO_CODE


@pytest.mark.parametrize("given,code", [("en", "en"), (" EN ", "en"), ("English", "en"), ("russian", "ru"),
                                        ("castilian", "es"), ("auto", "auto"), ("detect", "auto")])
def test_normalise_language(given, code):
    assert normalise_language(given) == code


@pytest.mark.parametrize("given", ["klingon", "", "e", "english!"])
def test_unknown_language_is_refused(given):
    with pytest.raises(ValueError, match="unknown language"):
        normalise_language(given)
