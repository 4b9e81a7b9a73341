import pytest

from models_service.client import ChatClient, ModelServerError, Sampling

from .fake_server import FakeModelServer, chat, garbage, status


def client(server, **kw):
    return ChatClient(base_url=server.base_url, model="m", backoff=0.01, **kw)


def test_every_request_sets_max_tokens_and_n():
    with FakeModelServer([chat("a", "b")]) as server:
        out = client(server).chat([{"role": "user", "content": "hi"}], Sampling(n=2, max_tokens=7))
    assert [c.text for c in out] == ["a", "b"]
    assert server.requests[0]["max_tokens"] == 7 and server.requests[0]["n"] == 2
    assert sum(c.completion_tokens for c in out) == 10


def test_500s_are_retried_then_succeed():
    with FakeModelServer([status(500), status(503), chat("ok")]) as server:
        out = client(server).chat([{"role": "user", "content": "hi"}])
    assert out[0].text == "ok" and len(server.requests) == 3


def test_persistent_500_raises_after_retries():
    with FakeModelServer([status(500)]) as server:
        with pytest.raises(ModelServerError, match="500"):
            client(server, retries=2).chat([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 3


def test_400_is_not_retried_and_carries_the_servers_message():
    with FakeModelServer([status(400, "max_tokens too large")]) as server:
        with pytest.raises(ModelServerError, match="max_tokens too large") as info:
            client(server).chat([{"role": "user", "content": "hi"}])
    assert info.value.status == 400 and len(server.requests) == 1


def test_unreadable_body_is_retried():
    with FakeModelServer([garbage, chat("fine")]) as server:
        assert client(server).chat([{"role": "user", "content": "x"}])[0].text == "fine"


def test_connection_refused_is_a_clear_error():
    dead = ChatClient(base_url="http://127.0.0.1:9/v1", model="m", retries=1, backoff=0.01)
    with pytest.raises(ModelServerError, match="cannot reach the model server"):
        dead.chat([{"role": "user", "content": "x"}])


def test_max_tokens_is_mandatory():
    with pytest.raises(ValueError):
        ChatClient(base_url="http://127.0.0.1:9/v1", model="m").chat([], Sampling(max_tokens=0))
