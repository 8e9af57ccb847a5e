"""Outgoing requests to addresses people give (callbacks now, files by URL later): only to public
addresses, checked when the address is given and again, on the address actually connected to,
when it is used.

A name is resolved once per request and the connection goes to an address that resolution
checked, so a DNS answer that changes in between (rebinding) cannot reach a private address.
ALLOW_PRIVATE_NETWORKS=true lifts the range rule (a service on a private network calling its
neighbours); the other checks stay."""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ANSWER_BYTES = 2048  # of the receiver's answer kept: enough to see what went wrong
SCHEMES = {"http": 80, "https": 443}
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


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str]:
    """POST `body` to `url`, checked again now, connecting to a checked address; the answer's status
    and the start of its text. Redirects are not followed: a 3xx is an answer like any other.
    AddressRefused for an address not allowed, SendFailed when no answer came."""
    target = _target(url)
    try:
        sock = _connect(target, timeout)
        if target.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        conn.sock = sock  # already connected, to the checked address: http.client does not connect again
        try:
            conn.request("POST", target.path, body=body,
                         headers={**headers, "Host": target.host_header, "Content-Length": str(len(body))})
            answer = conn.getresponse()
            return answer.status, answer.read(ANSWER_BYTES).decode("utf-8", "replace")
        finally:
            conn.close()
    except socket.timeout:
        raise SendFailed(f"no answer from {target.host} within {timeout:g} s") from None
    except ssl.SSLError as exc:
        raise SendFailed(f"TLS with {target.host} failed: {exc.reason or exc}") from None
    except http.client.HTTPException as exc:  # before OSError: RemoteDisconnected is both
        raise SendFailed(f"{target.host} gave no valid HTTP answer ({exc or type(exc).__name__})") from None
    except OSError as exc:
        raise SendFailed(f"{target.host}: {exc.strerror or exc}") from None


def _connect(target: Target, timeout: float) -> socket.socket:
    """A connection to the first of the checked addresses that accepts one."""
    error: OSError | None = None
    for ip in target.addresses:
        try:
            return socket.create_connection((str(ip), target.port), timeout=timeout)
        except OSError as exc:
            error = exc
    raise error if error is not None else OSError(f"{target.host}: no address to connect to")
