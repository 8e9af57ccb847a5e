"""Django's Russian formats, with the day and month in the genitive: "29 ноября", as Russian
writes a date ("E"), where Django's own MONTH_DAY_FORMAT ("j F") gives "29 Ноябрь"."""
from django.conf.locale.ru.formats import *  # noqa: F401,F403

MONTH_DAY_FORMAT = "j E"
