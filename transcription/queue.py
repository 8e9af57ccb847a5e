"""The embedded queue: Huey's SqliteHuey, making the folder of its file first (settings only
read the path; nothing is made while they are imported)."""
from pathlib import Path

import huey


class SqliteHuey(huey.SqliteHuey):
    def __init__(self, name="huey", filename="huey.db", **kwargs):
        Path(filename).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(name, filename=filename, **kwargs)
