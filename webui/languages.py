"""Whisper's languages by name in the page's language: Django's table where it has the language,
and this app's own names (translated in locale/) for the ones Django lacks."""
from __future__ import annotations

from django.utils.translation import get_language_info, gettext_noop
from django.utils.translation import gettext as _

from transcription.languages import LANGUAGES

# Whisper languages missing from django.conf.locale.LANG_INFO, by their English names.
OTHER_NAMES = {
    "zh": gettext_noop("Chinese"), "la": gettext_noop("Latin"), "mi": gettext_noop("Maori"),
    "si": gettext_noop("Sinhala"), "sn": gettext_noop("Shona"), "yo": gettext_noop("Yoruba"),
    "so": gettext_noop("Somali"), "oc": gettext_noop("Occitan"), "sd": gettext_noop("Sindhi"),
    "gu": gettext_noop("Gujarati"), "am": gettext_noop("Amharic"), "yi": gettext_noop("Yiddish"),
    "lo": gettext_noop("Lao"), "fo": gettext_noop("Faroese"), "ht": gettext_noop("Haitian Creole"),
    "ps": gettext_noop("Pashto"), "mt": gettext_noop("Maltese"), "sa": gettext_noop("Sanskrit"),
    "bo": gettext_noop("Tibetan"), "tl": gettext_noop("Tagalog"), "mg": gettext_noop("Malagasy"),
    "as": gettext_noop("Assamese"), "haw": gettext_noop("Hawaiian"), "ln": gettext_noop("Lingala"),
    "ha": gettext_noop("Hausa"), "ba": gettext_noop("Bashkir"), "jw": gettext_noop("Javanese"),
    "su": gettext_noop("Sundanese"), "yue": gettext_noop("Cantonese"),
}
# Names Django has but translates wrongly or not at all: locale/ru corrects them (Django's own
# catalog yields "Norwegian", "Белоруский", "Бурский", "Уэльский").
CORRECTED = (gettext_noop("Norwegian"), gettext_noop("Belarusian"), gettext_noop("Afrikaans"),
             gettext_noop("Welsh"))


def language_name(code: str) -> str:
    """A Whisper language's name in the page's language ("Латинский" for la on a Russian page)."""
    if not code:
        return ""
    if code in OTHER_NAMES:
        return _(OTHER_NAMES[code])
    try:
        return str(get_language_info(code)["name_translated"])
    except KeyError:
        return LANGUAGES.get(code, code).title()
