"""Fetching a file from a URL that a user typed, without letting that user reach inside our network.

An admin may import tasks "from a URL". The server makes the request, so a careless fetch would let
them read whatever the server can reach: the cloud metadata service (169.254.169.254), Redis and
PostgreSQL on loopback, admin consoles on the private network. The rules here:

- http and https only, no credentials in the URL, a port from ``IMPORT_URL_PORTS``;
- the host is resolved once per hop and *every* address it resolves to must be public (not
  private, loopback, link-local, multicast, reserved, unspecified, carrier-grade NAT, IPv6 ULA or
  site-local; IPv4 hidden inside IPv6 — mapped, compatible, 6to4, NAT64 — is unwrapped and checked
  as IPv4; Teredo is refused);
- the connection goes to the address that was checked (never a second lookup, so DNS rebinding
  has no window), with the original name sent as Host and used for TLS (SNI and certificate);
- redirects are followed by hand, at most ``IMPORT_URL_MAX_REDIRECTS``, each hop checked as above;
- one deadline for the whole fetch (lookups included) and a byte limit, enforced while reading;
- no proxy from the environment, no compression (a small gzip must not expand to gigabytes).

Numeric spellings of an address (``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``) are
refused outright: they exist to slip past filters, and a real file host has a name.

``IMPORT_URL_ALLOW_NETWORKS`` (CIDR list, empty by default and forced empty in production) lets
tests and local development fetch from addresses that are otherwise refused.
"""
from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

from django.conf import settings

from .errors import DomainError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]
READ_CHUNK = 64 * 1024
MAX_URL_CHARS = 2000
# Networks that smuggle an IPv4 address inside IPv6; the IPv4 part decides.
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Looks like a number, not a name: decimal, octal or hex IPv4 spellings, with or without dots.
NUMERIC_HOST = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)


class UnsafeURL(DomainError):
    """The URL or where it leads is not allowed: nothing was (or will be) requested from it."""

    code = "unsafe_url"
    status = 400


class FetchFailed(DomainError):
    """The URL was allowed but the file could not be fetched (too big, too slow, an error answer)."""

    code = "fetch_failed"
    status = 400


@dataclass
class FetchPolicy:
    max_bytes: int
    timeout: float
    max_redirects: int
    ports: frozenset[int]
    allow_networks: tuple = ()
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def from_settings(cls, **overrides) -> FetchPolicy:
        values = {
            "max_bytes": settings.IMPORT_MAX_BYTES,
            "timeout": settings.IMPORT_URL_TIMEOUT,
            "max_redirects": settings.IMPORT_URL_MAX_REDIRECTS,
            "ports": frozenset(settings.IMPORT_URL_PORTS),
            "allow_networks": tuple(ipaddress.ip_network(n) for n in settings.IMPORT_URL_ALLOW_NETWORKS),
        }
        return cls(**{**values, **overrides})


@dataclass
class FetchResult:
    url: str  # the last hop's URL
    size: int
    content_type: str
    hops: list[str] = field(default_factory=list)  # every URL requested, in order
    address: str = ""  # the address the file came from


# --- addresses ------------------------------------------------------------------------------------
def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped:
        return addr.ipv4_mapped
    if addr.sixtofour:
        return addr.sixtofour
    if any(addr in net for net in NAT64) or (addr in IPV4_COMPATIBLE and int(addr) > 1):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def refusal(addr: IPAddress) -> str | None:
    """Why ``addr`` must not be contacted, or None if it is a public unicast address."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.teredo:
            return "a Teredo tunnel address"
        inner = _embedded_ipv4(addr)
        if inner is not None:
            why = refusal(inner)
            return f"IPv4 {inner} inside IPv6, {why}" if why else None
        if addr.is_site_local:
            return "a site-local address"
    for test, why in (("is_unspecified", "unspecified"), ("is_loopback", "loopback"),
                      ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                      ("is_private", "a private address"), ("is_reserved", "reserved")):
        if getattr(addr, test):
            return why
    if not addr.is_global:  # e.g. 100.64.0.0/10, carrier-grade NAT
        return "not a public address"
    return None


def _allowed(addr: IPAddress, policy: FetchPolicy) -> bool:
    return any(addr.version == net.version and addr in net for net in policy.allow_networks)


# --- URLs -----------------------------------------------------------------------------------------
@dataclass
class Target:
    url: str
    scheme: str
    host: str  # as written, lower case, IPv6 without brackets
    port: int
    path: str  # path and query, what goes on the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def check_url(url: str, policy: FetchPolicy | None = None) -> Target:
    """Shape checks that need no network: scheme, host, port, no credentials, no numeric tricks,
    and a literal address must be allowed. Raises UnsafeURL with the reason."""
    policy = policy or FetchPolicy.from_settings()
    if not isinstance(url, str) or not url.strip():
        raise UnsafeURL("Give an http:// or https:// URL.")
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise UnsafeURL(f"The URL is longer than {MAX_URL_CHARS} characters.")
    if any(ch in url for ch in "\\\t\r\n ") or any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UnsafeURL("The URL contains spaces, backslashes or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"The URL cannot be read: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL("Only http:// and https:// URLs can be imported.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeURL("URLs with a user name or password are not accepted.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeURL("The URL has no host.")
    port = port if port is not None else (443 if scheme == "https" else 80)
    if port not in policy.ports:
        raise UnsafeURL(f"Port {port} is not allowed; use one of {sorted(policy.ports)}.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
        if NUMERIC_HOST.match(host):
            raise UnsafeURL(f"{host!r} is a numeric host spelling; write the name of the host.") from None
        try:
            host.encode("idna")
        except UnicodeError:
            raise UnsafeURL(f"{host!r} is not a valid host name.") from None
    if literal is not None:
        if isinstance(literal, ipaddress.IPv4Address) and str(literal) != host:
            raise UnsafeURL(f"{host!r} is not a plain dotted address.")
        why = refusal(literal)
        if why and not _allowed(literal, policy):
            raise UnsafeURL(f"{host} is {why}; only public addresses can be fetched.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(url=url, scheme=scheme, host=host, port=port, path=path)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [info[4][0] for info in infos]


def resolve_checked(target: Target, policy: FetchPolicy, resolver: Resolver, deadline: float) -> IPAddress:
    """Look the host up once; every answer must be allowed (an attacker's DNS may mix a public
    address with a private one and hope the client picks the second). Returns the first answer,
    which is the address the caller must connect to."""
    try:
        answers = [ipaddress.ip_address(target.host)]
    except ValueError:
        answers = _lookup(target, resolver, deadline)
    for addr in answers:
        why = refusal(addr)
        if why and not _allowed(addr, policy):
            raise UnsafeURL(f"{target.host} resolves to {addr}, {why}; only public addresses can be fetched.")
    return answers[0]


def _lookup(target: Target, resolver: Resolver, deadline: float) -> list[IPAddress]:
    # getaddrinfo has no timeout of its own: run it aside and stop waiting at the deadline.
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(resolver, target.host, target.port)
        raw = future.result(timeout=max(0.01, deadline - time.monotonic()))
    except FutureTimeout:
        raise FetchFailed(f"Looking up {target.host} took too long.") from None
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"Cannot resolve {target.host} ({exc}).") from None
    finally:
        pool.shutdown(wait=False)
    answers = []
    for value in raw:
        try:
            answers.append(ipaddress.ip_address(str(value).split("%")[0]))
        except ValueError:
            raise UnsafeURL(f"{target.host} resolved to something that is not an address.") from None
    if not answers:
        raise UnsafeURL(f"Cannot resolve {target.host}.")
    return answers


# --- connections pinned to the checked address ----------------------------------------------------
class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, address: IPAddress, port: int, timeout: float):
        super().__init__(str(address), port, timeout=timeout)

    def connect(self):
        self.sock = socket.create_connection((self.host, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to the checked address, with SNI and certificate verification for the host name."""

    def __init__(self, address: IPAddress, port: int, timeout: float, server_name: str, context: ssl.SSLContext):
        super().__init__(str(address), port, timeout=timeout, context=context)
        self._server_name = server_name
        self._context = context

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)


def _connection(target: Target, address: IPAddress, timeout: float, policy: FetchPolicy):
    if target.scheme == "https":
        context = policy.ssl_context or ssl.create_default_context()
        return _PinnedHTTPSConnection(address, target.port, timeout, target.host, context)
    return _PinnedHTTPConnection(address, target.port, timeout)


def fetch(url: str, dest: BinaryIO, *, policy: FetchPolicy | None = None,
          resolver: Resolver = system_resolver) -> FetchResult:
    """Write the body that ``url`` leads to into ``dest``; raise UnsafeURL or FetchFailed."""
    policy = policy or FetchPolicy.from_settings()
    deadline = time.monotonic() + policy.timeout
    hops: list[str] = []
    current = url
    while True:
        target = check_url(current, policy)
        if len(hops) > policy.max_redirects:
            raise UnsafeURL(f"More than {policy.max_redirects} redirects.")
        hops.append(target.url)
        address = resolve_checked(target, policy, resolver, deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchFailed(f"Fetching took longer than {policy.timeout:g} s.")
        conn = _connection(target, address, remaining, policy)
        try:
            try:
                conn.request("GET", target.path, headers={
                    "Host": target.host_header, "Accept-Encoding": "identity", "User-Agent": "Labelwork-import/1",
                    "Accept": "application/x-ndjson, application/jsonl, text/csv, text/plain, */*"})
                response = conn.getresponse()
            except (TimeoutError, socket.timeout):
                raise FetchFailed(f"{target.host} did not answer within {policy.timeout:g} s.") from None
            except ssl.SSLError as exc:
                raise FetchFailed(f"TLS with {target.host} failed: {exc.reason or exc}.") from None
            except (OSError, http.client.HTTPException) as exc:
                raise FetchFailed(f"Could not fetch from {target.host}: {exc}.") from None
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchFailed(f"{target.host} answered {response.status} without a Location.")
                current = urljoin(target.url, location.strip())
                continue
            if response.status != 200:
                raise FetchFailed(f"{target.host} answered {response.status} {response.reason}.")
            if (response.getheader("Content-Encoding") or "identity").lower() != "identity":
                raise FetchFailed("The server sent a compressed body; serve the file uncompressed.")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise FetchFailed(f"The file is {declared} bytes; the limit is {policy.max_bytes}.")
            size = _copy_body(response, conn, dest, policy, deadline)
            return FetchResult(url=target.url, size=size, content_type=response.getheader("Content-Type") or "",
                               hops=hops, address=str(address))
        finally:
            conn.close()


def _copy_body(response, conn, dest: BinaryIO, policy: FetchPolicy, deadline: float) -> int:
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchFailed(f"Fetching took longer than {policy.timeout:g} s.")
        if conn.sock is not None:
            conn.sock.settimeout(remaining)  # a server that stalls mid-body hits the same deadline
        try:
            chunk = response.read1(READ_CHUNK) if hasattr(response, "read1") else response.read(READ_CHUNK)
        except (TimeoutError, socket.timeout):
            raise FetchFailed(f"Fetching took longer than {policy.timeout:g} s.") from None
        except (OSError, http.client.HTTPException) as exc:
            raise FetchFailed(f"The download broke off: {exc}.") from None
        if not chunk:
            return size
        size += len(chunk)
        if size > policy.max_bytes:
            raise FetchFailed(f"The file is larger than the limit of {policy.max_bytes} bytes.")
        dest.write(chunk)
