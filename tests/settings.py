"""Test settings: the project's, with every writable path inside one throw-away folder.

The test database is a file (not :memory:) so that a real Huey consumer process can share it.
"""
import os
import tempfile

_run = os.environ.setdefault("TEST_RUN_DIR", tempfile.mkdtemp(prefix="stt-tests-"))
os.environ.setdefault("DATA_DIR", os.path.join(_run, "data"))
os.environ.setdefault("TEST_DATABASE_PATH", os.path.join(_run, "test.sqlite3"))
os.environ["HUEY_SQLITE_PATH"] = os.path.join(_run, "huey.sqlite3")
os.environ["HUEY_IMMEDIATE"] = "false"

from project.settings import *  # noqa: E402,F401,F403
