"""SSRF: the URL import fetches only from public addresses, checked at every redirect, connecting to
the very address it checked, within size and time limits. Real sockets and real HTTP(S) servers on
loopback: one at 127.0.0.1 plays the inside of the network (it must never see a request), one at
127.0.0.2 plays a public file host, reachable only because these tests put 127.0.0.2/32 on the
allow-list (the setting is empty by default and forced empty in production)."""
from __future__ import annotations

import io
import ipaddress
import socket
import ssl
import subprocess
import time
from urllib.parse import urlsplit

import pytest

from annotations.url_fetch import FetchFailed, FetchPolicy, UnsafeURL, check_url, fetch, refusal

from .file_servers import BODY, INSIDE, STAND_IN, Server

@pytest.fixture
def servers():
    """The inside server and the stand-in on the same port number, so that a second lookup that
    answered 127.0.0.1 instead of 127.0.0.2 would reach the inside one."""
    for _ in range(20):
        stand_in = Server(STAND_IN)
        try:
            inside = Server(INSIDE, stand_in.port)
        except OSError:
            stand_in.close()
            continue
        break
    yield stand_in, inside
    stand_in.close()
    inside.close()


def policy(*servers_, allow=(STAND_IN + "/32",), **overrides):
    return FetchPolicy(max_bytes=overrides.pop("max_bytes", 10_000), timeout=overrides.pop("timeout", 5.0),
                       max_redirects=overrides.pop("max_redirects", 5),
                       ports=frozenset({80, 443, *(s.port for s in servers_)}),
                       allow_networks=tuple(ipaddress.ip_network(n) for n in allow), **overrides)


def names(mapping):
    """A resolver for made-up host names; anything else is not found (no DNS on test machines)."""

    def resolve(host, port):
        if host not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return mapping[host]

    return resolve


# --- addresses and URL shapes, no network ------------------------------------------------------------
@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "255.255.255.255", "224.0.0.1", "239.255.255.250", "240.0.0.1", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:a9fe:a9fe::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
])
def test_private_loopback_link_local_multicast_reserved_and_smuggled_addresses_are_refused(address):
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "::ffff:93.184.216.34",
                                     "2002:5db8:d822::1", "64:ff9b::5db8:d822"])
def test_public_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("url, why", [
    ("ftp://example.org/x.jsonl", "Only http"),
    ("file:///etc/passwd", "Only http"),
    ("gopher://example.org:70/_", "Only http"),
    ("javascript:alert(1)", "Only http"),
    ("http:///x.jsonl", "no host"),
    ("http://user:pw@example.org/x.jsonl", "user name"),
    ("http://example.org@127.0.0.1/x.jsonl", "user name"),
    ("http://127.0.0.1/x.jsonl", "loopback"),
    ("http://[::1]/x.jsonl", "loopback"),
    ("http://[::ffff:127.0.0.1]/x.jsonl", "IPv4 127.0.0.1 inside IPv6"),
    ("http://[::ffff:7f00:1]/x.jsonl", "IPv4 127.0.0.1 inside IPv6"),
    ("http://[fd00::1]/x.jsonl", "private"),
    ("http://[fe80::1%25eth0]/x.jsonl", "link-local"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://0.0.0.0/x.jsonl", "unspecified"),
    ("http://10.1.2.3/x.jsonl", "private"),
    ("http://224.0.0.1/x.jsonl", "multicast"),
    ("http://2130706433/x.jsonl", "numeric host"),  # 127.0.0.1 in decimal
    ("http://0x7f000001/x.jsonl", "numeric host"),  # in hex
    ("http://0177.0.0.1/x.jsonl", "numeric host"),  # in octal
    ("http://0x7f.1/x.jsonl", "numeric host"),
    ("http://127.1/x.jsonl", "numeric host"),
    ("http://127.000.000.001/x.jsonl", "numeric host"),
    ("http://017700000001/x.jsonl", "numeric host"),
    ("http://example.org:22/x.jsonl", "Port 22"),
    ("http://example.org:6379/x.jsonl", "Port 6379"),
    ("http://example.org\\@127.0.0.1/x.jsonl", "backslashes"),
    ("http://exa mple.org/x.jsonl", "spaces"),
    ("http://example.org/x.jsonl\r\nHost: evil", "control characters"),
    ("http://example.org:99999/x.jsonl", "cannot be read"),
    ("", "Give an http"),
    ("http://example.org/" + "a" * 2100, "longer than"),
])
def test_url_shapes_that_are_refused_before_any_lookup(url, why):
    with pytest.raises(UnsafeURL, match=why):
        check_url(url, policy())


def test_a_public_looking_url_passes_the_shape_check():
    target = check_url("HTTPS://Files.Example.ORG./data/prompts.jsonl?v=2", policy())
    assert (target.scheme, target.host, target.port, target.path) == ("https", "files.example.org", 443,
                                                                       "/data/prompts.jsonl?v=2")


# --- real servers ---------------------------------------------------------------------------------
def test_the_local_test_server_itself_is_refused_as_loopback(servers):
    stand_in, inside = servers
    strict = policy(stand_in, inside, allow=())  # the default: nothing allowed
    for url in (inside.url(), inside.url(host="localhost"), inside.url(host="LOCALHOST."),
                inside.url(host="[::1]"), stand_in.url(), f"http://0x7f000001:{inside.port}/prompts.jsonl",
                f"http://2130706433:{inside.port}/prompts.jsonl"):
        with pytest.raises(UnsafeURL, match="loopback|numeric host|resolves to"):
            fetch(url, io.BytesIO(), policy=strict)
    assert inside.seen == [] and stand_in.seen == []


def test_an_allowed_host_serves_the_file_with_its_name_as_host(servers):
    stand_in, inside = servers
    out = io.BytesIO()
    result = fetch(stand_in.url(host="files.test"), out, policy=policy(stand_in),
                   resolver=names({"files.test": [STAND_IN]}))
    assert out.getvalue() == BODY and result.size == len(BODY) and result.address == STAND_IN
    assert stand_in.seen == [("/prompts.jsonl", f"files.test:{stand_in.port}")]
    assert inside.seen == []


@pytest.mark.parametrize("where", [
    "http://127.0.0.1:{port}/prompts.jsonl",
    "http://localhost:{port}/prompts.jsonl",
    "http://[::1]:{port}/prompts.jsonl",
    "http://[::ffff:127.0.0.1]:{port}/prompts.jsonl",
    "http://2130706433:{port}/prompts.jsonl",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://10.0.0.5/prompts.jsonl",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
])
@pytest.mark.parametrize("code", [302, 307])
def test_a_redirect_into_the_network_is_refused_at_that_hop(servers, where, code):
    stand_in, inside = servers
    to = where.format(port=inside.port)
    with pytest.raises(UnsafeURL):
        fetch(stand_in.url(f"/redirect?code={code}&to={to}"), io.BytesIO(), policy=policy(stand_in, inside),
              resolver=names({"localhost": [INSIDE, "::1"]}))
    assert len(stand_in.seen) == 1 and inside.seen == []


def test_redirects_are_followed_by_hand_and_capped(servers):
    stand_in, _inside = servers
    out = io.BytesIO()
    result = fetch(stand_in.url("/files/hop"), out, policy=policy(stand_in))
    assert out.getvalue() == BODY and [urlsplit(h).path for h in result.hops] == ["/files/hop", "/files/prompts.jsonl"]
    stand_in.seen.clear()
    with pytest.raises(UnsafeURL, match="More than 3 redirects"):
        fetch(stand_in.url("/loop"), io.BytesIO(), policy=policy(stand_in, max_redirects=3))
    assert len(stand_in.seen) == 4  # the first request and three redirects, then it stopped


def test_dns_rebinding_cannot_swap_the_address_after_the_check(servers):
    """The name answers the allowed address first and the inside one on every later lookup. The
    fetch looks up once and connects to what it checked: the inside server never hears of it."""
    stand_in, inside = servers
    answers = iter([[STAND_IN]] + [[INSIDE]] * 10)
    lookups = []

    def rebinding(host, port):
        lookups.append(host)
        return next(answers)

    out = io.BytesIO()
    fetch(stand_in.url(host="rebind.test"), out, policy=policy(stand_in), resolver=rebinding)
    assert out.getvalue() == BODY and lookups == ["rebind.test"]
    assert len(stand_in.seen) == 1 and inside.seen == []


def test_a_name_with_one_bad_address_among_good_ones_is_refused(servers):
    stand_in, inside = servers
    with pytest.raises(UnsafeURL, match="resolves to 127.0.0.1"):
        fetch(stand_in.url(host="mixed.test"), io.BytesIO(), policy=policy(stand_in),
              resolver=names({"mixed.test": [STAND_IN, INSIDE]}))
    with pytest.raises(UnsafeURL, match="Cannot resolve"):
        fetch(stand_in.url(host="nowhere.test"), io.BytesIO(), policy=policy(stand_in), resolver=names({}))
    assert stand_in.seen == [] and inside.seen == []


def test_size_limit_holds_with_and_without_a_declared_length(servers):
    stand_in, _inside = servers
    out = io.BytesIO()
    with pytest.raises(FetchFailed, match="larger than the limit of 1000"):
        fetch(stand_in.url("/big"), out, policy=policy(stand_in, max_bytes=1000))
    assert len(out.getvalue()) <= 1000
    with pytest.raises(FetchFailed, match="999999999 bytes; the limit is 1000"):
        fetch(stand_in.url("/declared-big"), io.BytesIO(), policy=policy(stand_in, max_bytes=1000))


@pytest.mark.parametrize("path", ["/slow", "/hang"])
def test_one_deadline_for_the_whole_fetch(servers, path):
    stand_in, _inside = servers
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="longer than 1.5 s|within 1.5 s"):
        fetch(stand_in.url(path), io.BytesIO(), policy=policy(stand_in, timeout=1.5))
    assert time.monotonic() - started < 3.5


def test_compressed_bodies_and_error_answers_are_refused_with_the_reason(servers):
    stand_in, _inside = servers
    with pytest.raises(FetchFailed, match="compressed"):
        fetch(stand_in.url("/gzip"), io.BytesIO(), policy=policy(stand_in))
    with pytest.raises(FetchFailed, match="answered 404"):
        fetch(stand_in.url("/missing"), io.BytesIO(), policy=policy(stand_in))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for files.test (openssl, as on any Debian machine)."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=files.test",
                    "-addext", "subjectAltName=DNS:files.test", "-keyout", str(folder / "key.pem"),
                    "-out", str(folder / "cert.pem")], check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


def test_https_connects_to_the_checked_address_and_verifies_the_name(certificate):
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server = Server(STAND_IN, tls=server_tls)
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        resolver = names({"files.test": [STAND_IN], "other.test": [STAND_IN]})
        out = io.BytesIO()
        fetch(server.url(host="files.test", scheme="https"), out, policy=policy(server, ssl_context=trusting),
              resolver=resolver)
        assert out.getvalue() == BODY and server.seen == [("/prompts.jsonl", f"files.test:{server.port}")]
        with pytest.raises(FetchFailed, match="TLS with other.test failed"):
            fetch(server.url(host="other.test", scheme="https"), io.BytesIO(),
                  policy=policy(server, ssl_context=trusting), resolver=resolver)
        with pytest.raises(FetchFailed, match="TLS with files.test failed"):  # not trusted by default
            fetch(server.url(host="files.test", scheme="https"), io.BytesIO(), policy=policy(server),
                  resolver=resolver)
    finally:
        server.close()
