"""Outgoing requests to addresses people give (callbacks, files by URL): only to public
addresses, checked when the address is given and again, on the address actually connected to,
when it is used; a redirect is checked as a new address.

A name is resolved once per request and the connection goes to an address that resolution
checked, so a DNS answer that changes in between (rebinding) cannot reach a private address.
ALLOW_PRIVATE_NETWORKS=true lifts the range rule (a service on a private network calling its
neighbours); the other checks stay."""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from urllib.parse import quote, urljoin, urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ANSWER_BYTES = 2048  # of the receiver's answer kept: enough to see what went wrong
SCHEMES = {"http": 80, "https": 443}
PATH_SAFE = "!#$%&'()*+,/:;=?@[]~"  # characters a request path may carry as they are
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: neither private nor public
PRIVATE_RULE = "only public addresses are allowed (ALLOW_PRIVATE_NETWORKS=true allows private ones)"
# Cloud instance metadata (AWS, GCP, Azure, OpenStack; AWS's IPv6 and ECS task endpoints; Alibaba):
# they hand out credentials, so they are refused even with ALLOW_PRIVATE_NETWORKS.
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"))


class AddressRefused(ValueError):
    """An address the service will not send to; the message is for the person who gave it."""


class SendFailed(OSError):
    """The request could not be made or answered (connection, TLS, timeout); the message says which."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == SCHEMES[self.scheme] else f"{host}:{self.port}"


def non_public(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is (loopback, private, …), None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    kinds = (("loopback", ip.is_loopback), ("unspecified", ip.is_unspecified),
             ("link-local", ip.is_link_local), ("shared (carrier-grade NAT)", ip in SHARED),
             ("multicast", ip.is_multicast), ("reserved", ip.is_reserved), ("private", ip.is_private),
             ("non-public", not ip.is_global))
    return next((kind for kind, matches in kinds if matches), None)


def check_url(url: str) -> list[IPAddress]:
    """The addresses `url` reaches, if it may be sent to: http(s), a host that resolves, and (unless
    ALLOW_PRIVATE_NETWORKS) every address it resolves to public. Else AddressRefused, saying why."""
    return list(_target(url).addresses)


def _target(url: str) -> Target:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(f"{url[:100]!r} is not a valid address ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise AddressRefused("use an http:// or https:// address" + (f", not {scheme}://" if scheme else ""))
    host = parts.hostname
    if not host:
        raise AddressRefused(f"{url[:100]!r} names no host")
    if not host.isascii():  # an international name, as DNS, TLS and the Host header know it
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise AddressRefused(f"{host!r} is not a valid host name ({exc})") from None
    port = port or SCHEMES[scheme]
    addresses = _resolve(host, port)
    for ip in addresses:
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        if mapped in METADATA:
            found = "is" if _is_literal(host) else f"resolves to {ip},"
            raise AddressRefused(f"{host} {found} a cloud metadata address, never allowed")
    if not settings.ALLOW_PRIVATE_NETWORKS:
        for ip in addresses:
            if kind := non_public(ip):
                a = "an" if kind[0] in "aeiou" else "a"
                found = "is" if _is_literal(host) else f"resolves to {ip},"
                raise AddressRefused(f"{host} {found} {a} {kind} address; {PRIVATE_RULE}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    path = quote(path, safe=PATH_SAFE)  # letters outside ASCII, spaces: escaped; escapes kept
    return Target(scheme, host, port, path, addresses)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise AddressRefused(f"{host} does not resolve to any address ({reason})") from None
    # An IPv6 answer may carry a zone ("fe80::1%eth0"): the address is what is checked.
    found = dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos)
    if not found:
        raise AddressRefused(f"{host} does not resolve to any address")
    return tuple(found)


@contextmanager
def _failures(host: str, timeout: float) -> Iterator[None]:
    """Socket, TLS and HTTP errors met while talking to `host`, as SendFailed saying which."""
    try:
        yield
    except SendFailed:
        raise
    except socket.timeout:
        raise SendFailed(f"no answer from {host} within {timeout:g} s") from None
    except ssl.SSLError as exc:
        raise SendFailed(f"TLS with {host} failed: {exc.reason or exc}") from None
    except http.client.HTTPException as exc:  # before OSError: RemoteDisconnected is both
        raise SendFailed(f"{host} gave no valid HTTP answer ({exc or type(exc).__name__})") from None
    except OSError as exc:
        raise SendFailed(f"{host}: {exc.strerror or exc}") from None


def _open(target: Target, timeout: float) -> http.client.HTTPConnection:
    """An HTTP connection to one of the target's checked addresses, TLS verified for its name."""
    sock = _connect(target, timeout)
    if target.scheme == "https":
        try:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        except BaseException:
            sock.close()
            raise
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    conn.sock = sock  # already connected, to the checked address: http.client does not connect again
    return conn


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str]:
    """POST `body` to `url`, checked again now, connecting to a checked address; the answer's status
    and the start of its text. Redirects are not followed: a 3xx is an answer like any other.
    AddressRefused for an address not allowed, SendFailed when no answer came."""
    target = _target(url)
    with _failures(target.host, timeout):
        conn = _open(target, timeout)
        try:
            conn.request("POST", target.path, body=body,
                         headers={**headers, "Host": target.host_header, "Content-Length": str(len(body))})
            answer = conn.getresponse()
            return answer.status, answer.read(ANSWER_BYTES).decode("utf-8", "replace")
        finally:
            conn.close()


REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
USER_AGENT = "whisper-service-fetch"


class Download:
    """The final answer of a GET, its body still to read: where it came from, its status and headers,
    and read(n). Close it (or use it in a `with`) to end the connection."""

    def __init__(self, url: str, host: str, conn: http.client.HTTPConnection, sock: socket.socket,
                 answer: http.client.HTTPResponse, timeout: float, deadline: float, max_seconds: float) -> None:
        self.url, self.host = url, host
        self.status, self.reason = answer.status, answer.reason
        self.headers: Message = answer.headers
        # Content-Length as announced (None: not given, or chunked); http.client counts it down.
        self.length: int | None = answer.length
        self.received = 0
        self._conn, self._sock, self._answer = conn, sock, answer
        self._timeout, self._deadline, self._max_seconds = timeout, deadline, max_seconds

    def read(self, n: int) -> bytes:
        """Up to `n` bytes of the body, b"" at its end; SendFailed when the server stalls longer than
        the time-out, the whole download takes too long, or the body ends short of its length."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise self._too_slow()
        # One receive at most (read1), each bounded: a server sending a byte at a time cannot
        # stretch a read past the time-out or the download past its deadline.
        self._sock.settimeout(min(self._timeout, remaining))
        try:
            with _failures(self.host, self._timeout):
                data = self._answer.read1(n)
        except SendFailed:
            if time.monotonic() >= self._deadline:
                raise self._too_slow() from None
            raise
        self.received += len(data)
        if not data and n and self.length is not None and self.received < self.length:
            raise SendFailed(f"{self.host} closed the connection after {self.received} of {self.length} bytes")
        return data

    def _too_slow(self) -> SendFailed:
        return _too_slow(self.host, self._max_seconds)

    def close(self) -> None:
        self._answer.close()
        self._conn.close()
        self._sock.close()

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_stream(url: str, timeout: float, max_seconds: float, max_redirects: int = MAX_REDIRECTS) -> Download:
    """GET `url` for its body, following up to `max_redirects` redirects: each new address is checked
    as the first was and connected to as checked. `timeout` bounds each connection and each read;
    `max_seconds` the whole download. The final answer must be a 2xx. AddressRefused for an address
    not allowed (the first or one redirected to), SendFailed for no usable answer (naming the host,
    and the status it answered)."""
    url, deadline, first_host = url.strip(), time.monotonic() + max_seconds, None
    for _hop in range(max_redirects + 1):
        target = _target(url)
        first_host = first_host or target.host
        if deadline - time.monotonic() <= 0:
            raise _too_slow(first_host, max_seconds)
        try:
            conn, sock, answer = _get(target, timeout, deadline)
        except SendFailed:
            if time.monotonic() >= deadline:
                raise _too_slow(first_host, max_seconds) from None
            raise
        download = Download(url, target.host, conn, sock, answer, timeout, deadline, max_seconds)
        location = answer.getheader("Location", "").strip()
        if answer.status in REDIRECTS and location:
            download.close()
            url = urljoin(url, location)
            continue
        if not 200 <= answer.status < 300:
            download.close()
            raise SendFailed(f"{target.host} answered {answer.status} {answer.reason}".rstrip())
        return download
    raise SendFailed(f"{first_host} redirected more than {max_redirects} times")


def _too_slow(host: str, max_seconds: float) -> SendFailed:
    return SendFailed(f"the download from {host} took longer than {max_seconds:g} s")


def _get(target: Target, timeout: float, deadline: float):
    """Ask for the target with GET: the connection, its socket and the answer's head, which must
    come by the deadline (a server sending it a byte at a time is cut off all the same)."""
    with _failures(target.host, timeout):
        conn = _open(target, min(timeout, deadline - time.monotonic()))
        sock = conn.sock
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (sock,))
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request("GET", target.path, headers={
                "Host": target.host_header, "User-Agent": USER_AGENT, "Accept": "*/*",
                "Accept-Encoding": "identity"})  # the bytes counted are the file's bytes
            return conn, sock, conn.getresponse()
        except BaseException:
            conn.close()
            sock.close()
            raise
        finally:
            watchdog.cancel()


def _cut(sock: socket.socket) -> None:
    """End a connection from another thread: the read waiting on it returns at once."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # under TLS too: the TLS layer sees the end
    except OSError:
        pass


def _connect(target: Target, timeout: float) -> socket.socket:
    """A connection to the first of the checked addresses that accepts one."""
    error: OSError | None = None
    for ip in target.addresses:
        try:
            return socket.create_connection((str(ip), target.port), timeout=timeout)
        except OSError as exc:
            error = exc
    raise error if error is not None else OSError(f"{target.host}: no address to connect to")
