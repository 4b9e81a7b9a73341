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


@pytest.fixture
def rates(settings):
    """The real limiter with a small limit: 3 attempts a minute, login form and token endpoint."""
    from django.core.cache import cache

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"login": "3/min", "token": "3/min"}}
    cache.clear()
    yield
    cache.clear()


def login(client, username, ip="198.51.100.7", **headers):
    return client.post("/accounts/login/", {"username": username, "password": "wrong"}, REMOTE_ADDR=ip,
                       **headers).status_code


def token(api, username, ip="198.51.100.7", **headers):
    return api().post("/api/auth/token/", {"username": username, "password": "nope"}, REMOTE_ADDR=ip,
                      **headers).status_code


def test_login_is_rate_limited(client, rates, annotator):
    assert [login(client, annotator.username) for _ in range(5)] == [200, 200, 200, 429, 429]


def test_token_endpoint_is_rate_limited(api, rates, annotator):
    assert [token(api, annotator.username) for _ in range(5)] == [400, 400, 400, 429, 429]


@pytest.mark.parametrize("attempt", [login, token])
def test_a_forged_forwarded_for_header_does_not_buy_fresh_attempts(client, api, rates, attempt):
    target = client if attempt is login else api
    codes = [attempt(target, f"someone{i}", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}") for i in range(5)]
    assert codes[3:] == [429, 429]


@pytest.mark.parametrize("attempt", [login, token])
def test_one_account_is_limited_across_many_addresses(client, api, rates, annotator, attempt):
    target = client if attempt is login else api
    codes = [attempt(target, annotator.username, ip=f"198.51.100.{i}") for i in range(5)]
    assert codes[3:] == [429, 429]
    assert attempt(target, "someone-else", ip="198.51.100.99") != 429  # other accounts and clients are not


def test_behind_a_trusted_proxy_the_forwarded_address_identifies_the_client(client, rates, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    codes = [login(client, f"user{i}", ip="10.0.0.2", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}") for i in range(5)]
    assert 429 not in codes  # five clients behind one proxy, one attempt each


@pytest.mark.parametrize("query", [{"ordering": "created_by__password"}, {"ordering": "-annotator__password"},
                                   {"created_by__password__startswith": "md5"}, {"annotator__username": "x"}])
def test_relation_lookups_in_query_parameters_are_refused_before_any_view_runs(api, admin_user, project, query):
    path = f"/api/projects/{project.pk}/"
    response = api(admin_user).get(path, query)
    assert response.status_code == 400 and "lookups through relations" in response.json()["detail"]
    assert admin_user.password not in response.content.decode()
