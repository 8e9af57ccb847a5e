"""Helpers for tests and benchmarks that start the service as real processes (no Django here:
bench/ scripts import this too)."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 60, healthy: bool = True) -> requests.Response:
    """Until `url` answers (below 500 unless `healthy` is false: a test of a broken dependency
    wants its 503); returns that answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = requests.get(url, timeout=30)
            if answer.status_code < 500 or not healthy:
                return answer
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not come up within {timeout:.0f} s")


def child_pid(parent: int, needle: str, timeout: float = 30) -> int:
    """The pid of `parent`'s child whose command line contains `needle`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent and needle in cmdline:
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError(f"no {needle!r} child of pid {parent}")


def rss_kib(pid: int, field: str = "VmRSS") -> int | None:
    """A memory line of /proc/PID/status in KiB, None once the process is gone. VmRSS counts the
    pages of memory-mapped files too (the decoded audio: page cache the kernel can drop);
    RssAnon only what the process holds itself."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
