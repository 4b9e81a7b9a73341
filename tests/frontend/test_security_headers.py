import pytest

pytestmark = pytest.mark.django_db


def csp(response) -> dict:
    header = response.headers["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in header.split(";")) if d}


@pytest.mark.parametrize("path", ["/accounts/login/", "/api/docs/"])
def test_pages_carry_a_strict_csp(client, annotator, path):
    client.force_login(annotator)
    policy = csp(client.get(path))
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no CDN
    assert policy["img-src"] == ["'self'", "data:"]  # markdown images cannot call out
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]


def test_no_inline_script_in_our_pages(client, annotator):
    client.force_login(annotator)
    for path in ("/", "/accounts/login/", "/api/docs/"):
        body = client.get(path).content.decode()
        for chunk in body.split("<script")[1:]:
            assert chunk.split(">")[0].strip().startswith("src="), (path, chunk[:80])


def test_home_requires_login(client):
    assert client.get("/").status_code == 302


def test_login_is_rate_limited(client, settings, annotator):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"login": "3/min", "token": "3/min"}}
    from django.core.cache import cache

    cache.clear()
    codes = [client.post("/accounts/login/", {"username": annotator.username, "password": "wrong"}).status_code
             for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]


def test_token_endpoint_is_rate_limited(api, settings, annotator):
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    cache.clear()
    ScopedRateThrottle.THROTTLE_RATES = {"login": "3/min", "token": "3/min"}
    try:
        codes = [api().post("/api/auth/token/", {"username": annotator.username, "password": "nope"}).status_code
                 for _ in range(5)]
    finally:
        ScopedRateThrottle.THROTTLE_RATES = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert codes == [400, 400, 400, 429, 429]
