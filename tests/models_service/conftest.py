import pytest

from annotations.models import ModelVersion


@pytest.fixture
def model_at(db):
    """model_at(server) -> a ModelVersion served by that (fake) server."""

    def make(server, name="fake-model"):
        return ModelVersion.objects.create(name=name, backend="openai", endpoint=server.base_url)

    return make
