"""The 503 for a lost database, outside a view: labelstudio_app.database_errors.server_error is
Django's handler500 and is called inside the ``except`` block, so it still sees the exception.
(The real drop, through gunicorn and Chromium, is in tests/integration/test_faults.py.)"""
from django.db import OperationalError
from django.test import RequestFactory

from labelstudio_app.database_errors import is_database_error, posted_text, server_error


def answer(exc, request):
    try:
        raise exc
    except Exception:  # noqa: BLE001 - the handler reads sys.exc_info() like Django calls it
        return server_error(request)


def test_a_database_error_outside_a_view_is_a_503_page_and_anything_else_a_500():
    request = RequestFactory().post("/projects/1/instructions/", {"body": "My long <b>rules</b>",
                                                                  "csrfmiddlewaretoken": "tok", "password": "pw"})
    response = answer(OperationalError("server closed the connection unexpectedly"), request)
    assert response.status_code == 503 and response["Retry-After"]
    page = response.content.decode()
    assert "Database unavailable — your text is kept" in page and "My long &lt;b&gt;rules&lt;/b&gt;" in page
    assert "tok" not in page and "pw" not in page and "server closed" not in page
    assert answer(ValueError("a bug"), request).status_code == 500
    api = answer(OperationalError("gone"), RequestFactory().get("/api/projects/1/tasks/"))
    assert api.status_code == 503 and api["Content-Type"] == "application/json"


def test_a_database_error_wrapped_in_another_is_recognised_and_posted_secrets_are_not_shown():
    try:
        try:
            raise OperationalError("gone")
        except OperationalError as inner:
            raise RuntimeError("while rendering the template") from inner
    except RuntimeError as outer:
        assert is_database_error(outer)
    assert not is_database_error(RuntimeError("no cause"))
    request = RequestFactory().post("/x/", {"reason": "too vague", "api_token": "t", "new_password1": "p", "empty": ""})
    assert posted_text(request) == [("reason", "too vague")]
