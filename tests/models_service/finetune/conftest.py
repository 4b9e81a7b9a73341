import pytest

from annotations.exports.service import build_snapshot, create_snapshot
from annotations.models import ModelVersion
from tests.annotations.exports.helpers import comparison, demonstration

# Tiny runs: few steps, short sequences, a high learning rate so a few steps visibly move the model.
TINY = {"max_steps": 4, "batch_size": 2, "max_length": 128, "learning_rate": 1e-3}


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")
    settings.FINETUNE_ROOT = str(tmp_path / "finetunes")


@pytest.fixture(scope="session")
def base_model_path():
    from models_service.model_files import prepare_model

    return str(prepare_model())


@pytest.fixture
def base_model(db, base_model_path):
    return ModelVersion.objects.create(name="smol-base", base_model=base_model_path)


def make_snapshot(project, n=8):
    for i in range(n):
        demonstration(project, [{"role": "user", "content": f"What is {i} plus {i}?"}], [f"It is {2 * i}, my friend."])
        comparison(project, [{"role": "user", "content": f"Say the number {i}."}],
                   [f"{i}.", "I will not.", "Banana"], [[[0], [1, 2]]])
    return build_snapshot(snapshot_id=create_snapshot(project=project, eval_fraction=0, near_duplicates=False).pk)


@pytest.fixture
def snapshot(project):
    return make_snapshot(project)
