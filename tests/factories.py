import factory
from django.contrib.auth import get_user_model

from annotations.models import CandidateReply, Membership, Project, Role, Task, TaskKind
from annotations.services.imports import content_hash
from annotations.services.instructions import publish_instructions


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-only")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Project {n}")
    created_by = factory.SubFactory(UserFactory)
    # Off in tests by default: an import would otherwise queue model work against a server that
    # most tests do not start. tests/models_service/test_drafting.py turns it on.
    draft_on_import = False

    @factory.post_generation
    def instructions(project, create, extracted, **kwargs):
        """Published by default; pass instructions=False for a project without any."""
        if create:
            Membership.objects.get_or_create(project=project, user=project.created_by, defaults={"role": Role.ADMIN})
            if extracted is not False:
                publish_instructions(project=project, body=extracted or "# Be helpful, truthful, harmless.",
                                     published_by=project.created_by)
                project.refresh_from_db()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.ANNOTATOR


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    project = factory.SubFactory(ProjectFactory)
    kind = TaskKind.DEMONSTRATION
    conversation = factory.Sequence(lambda n: [{"role": "user", "content": f"Question number {n}?"}])
    content_hash = factory.LazyAttribute(lambda t: content_hash(t.kind, t.conversation, []))


class ReplyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CandidateReply

    task = factory.SubFactory(TaskFactory)
    content = factory.Sequence(lambda n: f"Reply {n}.")
    source = CandidateReply.Source.HUMAN


def comparison_task(project, k=3) -> Task:
    task = TaskFactory(project=project, kind=TaskKind.COMPARISON)
    for _ in range(k):
        ReplyFactory(task=task, for_ranking=True)
    return task
