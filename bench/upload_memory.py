"""Upload limit under load: stream a huge generated body to POST /transcribe of a fresh `serve` and
watch the web process's memory and disk while the service refuses it.

    .venv/bin/python bench/upload_memory.py                       # 6 GiB, declared Content-Length
    .venv/bin/python bench/upload_memory.py --mode streamed       # just over the cap, streamed to disk
    .venv/bin/python bench/upload_memory.py --mode chunked        # 6 GiB, Transfer-Encoding: chunked
    .venv/bin/python bench/upload_memory.py --mode field          # a text field just under the cap

The body is generated on the fly (one random MiB sent over and over), so the client needs neither
the memory nor the disk for it. A sampler reads VmRSS of the `runserver` child of `serve` from
/proc every 20 ms while the client sends. Modes:

- declared: an honest multipart request whose Content-Length says 6 GiB. The upload handler refuses
  it from the header before reading the body; the question is what the server does with the rest.
- streamed: a file part of MAX_UPLOAD_BYTES + 512 KiB, so the declared length passes the header
  check and the cap is enforced while streaming (the 5 GiB are written to the temp dir first).
- chunked: the same 6 GiB without a Content-Length (Transfer-Encoding: chunked): Django reads no
  body without one, so the service answers 411 Length Required at once.
- field: a form *text* field (no file name) of MAX_UPLOAD_BYTES - 1 MiB: under the cap, so it is
  parsed, and Django refuses it past DATA_UPLOAD_MAX_MEMORY_SIZE (1 MiB); the rest must not be read.

Prints the status code, how many bytes had been sent when the answer came and when the server
stopped reading (connection closed) or the body ended, max RSS, and what was left on disk and in
the database. Exit status 1 when RSS went over --rss-limit-mb or anything was left behind.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.processes import child_pid, free_port, rss_kib, wait_up  # noqa: E402
MiB = 1024 * 1024
GiB = 1024 * MiB


class Service:
    """`manage.py serve` in a throw-away DATA_DIR on a free port; stopped with SIGINT (its Ctrl-C)."""

    def __init__(self, env_extra: dict[str, str]) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="stt-bench-upload-"))
        self.port = free_port()
        self.env = {**os.environ, "DATA_DIR": str(self.data), "DJANGO_SETTINGS_MODULE": "project.settings",
                    **env_extra}
        manage = [sys.executable, str(REPO / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], env=self.env, check=True, cwd=REPO)
        self.log = open(self.data / "service.log", "wb")
        self.proc = subprocess.Popen([*manage, "serve", f"127.0.0.1:{self.port}"], env=self.env, cwd=REPO,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.web_pid = child_pid(self.proc.pid, "runserver")
        try:
            wait_up(f"http://127.0.0.1:{self.port}/health", healthy=False)
        except AssertionError:
            raise SystemExit(f"service did not come up; see {self.data / 'service.log'}") from None

    def leftovers(self) -> dict:
        tmp = Path(self.env.get("FILE_UPLOAD_TEMP_DIR", self.data / "tmp"))
        uploads = self.data / "media" / "uploads"
        with sqlite3.connect(self.data / "db.sqlite3") as db:
            rows = {t: db.execute(f"SELECT count(*) FROM transcription_{t}").fetchone()[0]
                    for t in ("upload", "job")}
        return {
            "temp_files": sorted(p.name for p in tmp.iterdir()) if tmp.exists() else [],
            "upload_files": sorted(p.name for p in uploads.iterdir()) if uploads.exists() else [],
            "db_rows": rows,
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


class Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            kib = rss_kib(self.pid)
            if kib is not None:
                self.samples.append((time.monotonic(), kib))
            time.sleep(self.interval)

    def max_mib(self) -> float:
        return max(k for _, k in self.samples) / 1024 if self.samples else float("nan")


def multipart_parts(boundary: str, filename: str | None, fields: dict[str, str]) -> tuple[bytes, bytes]:
    """Everything before and after the generated bytes: the fields, then the file part (or, with
    no file name, a text field `initial_prompt`)."""
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    if filename is None:
        head += f'--{boundary}\r\nContent-Disposition: form-data; name="initial_prompt"\r\n\r\n'.encode()
    else:
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return head, f"\r\n--{boundary}--\r\n".encode()


def upload(port: int, file_bytes: int, chunked: bool, block: bytes, filename: str | None = "huge.wav") -> dict:
    """Send the request, reading the answer as soon as one arrives; keep sending until the server
    stops reading or the body is complete, as a browser or curl would."""
    boundary = "benchboundary" + os.urandom(8).hex()
    head, tail = multipart_parts(boundary, filename, {"language": "en", "model": "base", "wait": "false"})
    total = len(head) + file_bytes + len(tail)
    headers = [f"POST /transcribe HTTP/1.1", f"Host: 127.0.0.1:{port}",
               f"Content-Type: multipart/form-data; boundary={boundary}", "Connection: close"]
    headers.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    sock = socket.create_connection(("127.0.0.1", port))
    began = time.monotonic()
    sent = 0
    answer = bytearray()
    answered_at: tuple[float, int] | None = None
    stopped: tuple[float, int, str] | None = None

    def pieces():
        yield head
        left = file_bytes
        while left > 0:
            piece = block if left >= len(block) else block[:left]
            left -= len(piece)
            yield piece
        yield tail

    def frame(piece: bytes) -> bytes:
        return f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece

    def read_answer() -> None:
        nonlocal answered_at
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if data and answered_at is None:
            answered_at = (time.monotonic() - began, sent)
        answer.extend(data)

    try:
        sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        for piece in pieces():
            data = memoryview(frame(piece))
            while data:
                readable, writable, _ = select.select([sock], [sock], [], 30)
                if readable:
                    read_answer()
                if not writable:
                    if not readable:
                        raise TimeoutError("server neither reads nor answers for 30 s")
                    continue
                try:
                    n = sock.send(data[: 256 * 1024])
                except (BrokenPipeError, ConnectionResetError) as exc:
                    stopped = (time.monotonic() - began, sent, type(exc).__name__)
                    break
                data = data[n:]
                sent += n
            if stopped:
                break
        if chunked and not stopped:
            sock.sendall(b"0\r\n\r\n")
        if not stopped:
            stopped = (time.monotonic() - began, sent, "body complete")
        sock.settimeout(30)
        while True:  # the rest of the answer, if any
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not data:
                break
            if answered_at is None:
                answered_at = (time.monotonic() - began, sent)
            answer.extend(data)
    finally:
        sock.close()
    status_line = bytes(answer).split(b"\r\n", 1)[0].decode(errors="replace")
    body = bytes(answer).split(b"\r\n\r\n", 1)[1][:300].decode(errors="replace") if b"\r\n\r\n" in answer else ""
    return {
        "declared_bytes": None if chunked else total,
        "status_line": status_line or "(no answer)",
        "status": int(status_line.split()[1]) if status_line.startswith("HTTP/") else None,
        "body": body,
        "answered_after_seconds": round(answered_at[0], 3) if answered_at else None,
        "answered_after_bytes_sent": answered_at[1] if answered_at else None,
        "stopped_after_seconds": round(stopped[0], 3),
        "stopped_after_bytes_sent": stopped[1],
        "stopped_because": stopped[2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["declared", "streamed", "chunked", "field"], default="declared")
    parser.add_argument("--gib", type=float, default=6.0, help="body size for declared/chunked")
    parser.add_argument("--max-upload-bytes", type=int, default=5 * GiB, help="the server's MAX_UPLOAD_BYTES")
    parser.add_argument("--rss-limit-mb", type=float, default=200)
    args = parser.parse_args()

    file_bytes = {"streamed": args.max_upload_bytes + 512 * 1024,
                  "field": args.max_upload_bytes - MiB}.get(args.mode, int(args.gib * GiB))
    service = Service({"MAX_UPLOAD_BYTES": str(args.max_upload_bytes)})
    block = os.urandom(MiB)
    try:
        baseline = rss_kib(service.web_pid) / 1024
        sampler = Sampler(service.web_pid)
        sampler.start()
        result = upload(service.port, file_bytes, args.mode == "chunked", block,
                        None if args.mode == "field" else "huge.wav")
        time.sleep(2.0)  # what the server does right after the request counts too
        sampler.done.set()
        sampler.join()
        alive = service.proc.poll() is None
        report = {
            "mode": args.mode,
            "file_bytes": file_bytes,
            "max_upload_bytes": args.max_upload_bytes,
            **result,
            "web_pid": service.web_pid,
            "rss_baseline_mib": round(baseline, 1),
            "rss_max_mib": round(sampler.max_mib(), 1),
            "rss_samples": len(sampler.samples),
            "service_alive_after": alive,
            **service.leftovers(),
        }
    finally:
        service.stop()
    print(json.dumps(report, indent=2))
    left = report["temp_files"] or report["upload_files"] or any(report["db_rows"].values())
    expected = 411 if args.mode == "chunked" else 413  # Django reads no body without a Content-Length
    ok = report["rss_max_mib"] < args.rss_limit_mb and not left and report["status"] == expected
    print(f"{args.mode}: status {report['status']}, answered after "
          f"{report['answered_after_bytes_sent']} bytes sent, server stopped reading after "
          f"{report['stopped_after_bytes_sent']} bytes ({report['stopped_because']}), "
          f"max RSS {report['rss_max_mib']} MiB (limit {args.rss_limit_mb}), "
          f"left behind: {'nothing' if not left else 'YES'} -> {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
