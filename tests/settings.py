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
# Callbacks go to receivers the tests run on 127.0.0.1, and are retried within a second.
os.environ.setdefault("ALLOW_PRIVATE_NETWORKS", "true")
os.environ.setdefault("WEBHOOK_RETRY_SECONDS", "0.5")

from project.settings import *  # noqa: E402,F401,F403
