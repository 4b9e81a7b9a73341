"""Schema-driven fuzzing of the whole API (schemathesis over drf-spectacular's OpenAPI document):
every operation, with inputs that fit the schema and inputs that break it, as project A's admin
(real ids of A's objects in the path, so requests get past the lookups into validation and the
services) and as an outsider. Nothing may answer 5xx: bad input is a 4xx with a message.

Bounded so the run stays well under two minutes on a shared 2-core machine: a few examples per
operation and mode (``LSW_FUZZ_EXAMPLES`` raises it for a deeper local run), no shrinking,
derandomized so a failure repeats. Requests go in-process through the WSGI application and the
test's database transaction; jobs queued on commit are never sent, so nothing reaches Celery or a
model server."""
from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode

from annotations.models import Membership, Role

from tests.annotations.test_permissions import world  # noqa: F401  (fixture: project A with one object of each kind)

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("LSW_FUZZ_EXAMPLES", "3"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, phases=[Phase.explicit,
                Phase.generate], suppress_health_check=list(HealthCheck))


@pytest.fixture
def api_schema():
    from drf_spectacular.generators import SchemaGenerator

    schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    schema.app = get_wsgi_application()
    return schema


@pytest.fixture
def in_test_transaction():
    """The WSGI handler would close the database connection after each request, which inside
    the test's transaction means rolling it back; Django's own test client unhooks the same
    receiver for the same reason."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_no_operation_answers_5xx_to_an_admin_or_an_outsider(api_schema, world, in_test_transaction):  # noqa: F811
    users = {"admin": world["members"]["admin"], "outsider": world["outsider"]}
    real_ids = world["ids"]
    statuses = {who: Counter() for who in users}
    failures, skipped = [], []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 40

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                # A fuzzed member change may have demoted or removed the admin: put them back, so
                # every operation is tried by a member.
                Membership.objects.update_or_create(project=world["a"], user=users["admin"],
                                                    defaults={"role": Role.ADMIN})
                for name, value in list((case.path_parameters or {}).items()):
                    # Always A's project (so the admin is a member); A's real object ids for every
                    # other example, generated ones (huge, zero) for the rest.
                    if name == "project_id" or (name in real_ids and isinstance(value, int) and value % 2 == 0):
                        case.path_parameters[name] = real_ids[name]
                for who, user in users.items():
                    if who == "outsider" and mode is GenerationMode.NEGATIVE:
                        continue  # refused before any input is read: the positive examples cover it
                    token, _ = Token.objects.get_or_create(user=user)  # a fuzzed DELETE may have revoked it
                    response = case.call(headers={"Authorization": f"Token {token.key}"})
                    statuses[who][response.status_code // 100] += 1
                    if response.status_code >= 500:
                        failures.append(f"{who} {case.method} {case.formatted_path} -> {response.status_code}\n"
                                        f"{case.as_curl_command()}\n{response.text[:500]}")

            try:
                run()
            except Unsatisfiable:
                # Nothing to break in this operation's schema (no parameters, no body).
                assert mode is GenerationMode.NEGATIVE, operation.label
                skipped.append(operation.label)

    print(f"fuzz: {len(operations)} operations, {statuses}, negative mode skipped for {len(skipped)}")
    assert not failures, "\n\n".join(failures[:10])
    # The fuzz went past authentication and into the views: the admin's requests succeeded often,
    # and an outsider never got anything but refusals.
    assert statuses["admin"][2] > 50, statuses
    assert statuses["outsider"][2] < statuses["admin"][2] / 4, statuses
