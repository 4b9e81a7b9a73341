"""Thin DRF views: parse input, call one service or selector, render output."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.cache import cache
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors
from ..feedback import redteam
from ..feedback import serializers as feedback_s
from ..models import AuditEntry, InstructionVersion, Membership, Project, Submission, Task, TaskKind
from ..permissions import ADMINS, ALL_ROLES, LABELLERS, STAFF, ProjectRolePermission
from ..services import imports, instructions, leases, projects, reviews, submissions, tokens, url_imports
from . import serializers as s
from .throttles import TokenPerAccountThrottle, TokenPerClientThrottle

User = get_user_model()


class ProjectScopedView(APIView):
    """Base of every view under /api/projects/<id>/. ``roles`` maps an HTTP method to the roles
    allowed to use it; a method not listed is refused to everyone."""

    permission_classes = [IsAuthenticated, ProjectRolePermission]
    roles: dict[str, frozenset] = {}
    project: Project
    membership: Membership

    def action_name(self, request) -> str:
        method = request.method.lower()
        return "get" if method == "head" else method  # HEAD is GET without the body

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication and the project check come first
        _refuse_relation_lookups(request)


def _refuse_relation_lookups(request) -> None:
    """No query parameter may name a lookup through a relation (``created_by__password``), as a
    key or as an ordering. Each view allow-lists its own filters and orderings as well; this is the
    floor that holds for views written later."""
    for key in request.query_params:
        values = request.query_params.getlist(key) if key == "ordering" else []
        if "__" in key or any("__" in value for value in values):
            raise ValidationError({"detail": f"Query parameter {key!r} is not allowed: no lookups through relations."})


# --- auth -----------------------------------------------------------------------------------------
class TokenView(ObtainAuthToken):
    """POST: exchange a username and password for an API token (rate limited against guessing).
    DELETE: revoke the token the request is authenticated with (log out everywhere)."""

    throttle_classes = [TokenPerClientThrottle, TokenPerAccountThrottle]

    def get_permissions(self):
        # Anyone may try a password; only an authenticated user can revoke their own token.
        return [IsAuthenticated()] if self.request.method == "DELETE" else []

    @extend_schema(request=s.TokenIn, responses={200: s.TokenOut})
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = tokens.issue_token(user=serializer.validated_data["user"], client_ip=_client_ip(request))
        return Response({"token": token.key})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, *args, **kwargs):
        tokens.revoke_token(user=request.user, client_ip=_client_ip(request))
        return Response(status=204)


def _client_ip(request) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is set by the client unless a proxy rewrites it.
    return request.META.get("REMOTE_ADDR", "")


# --- projects -------------------------------------------------------------------------------------
class ProjectListView(APIView):
    @extend_schema(responses=s.ProjectOut(many=True))
    def get(self, request):
        mine = selectors.projects_for_user(request.user)
        roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
        return Response(s.ProjectOut(mine, many=True, context={"roles": roles}).data)

    @extend_schema(request=s.ProjectCreateIn, responses={201: s.ProjectOut})
    def post(self, request):
        # Creating projects is for staff or users granted the permission, not for every annotator.
        if not (request.user.is_staff or request.user.has_perm("annotations.add_project")):
            raise PermissionDenied("You may not create projects.")
        data = s.ProjectCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        project = projects.create_project(created_by=request.user, **data.validated_data)
        return Response(s.ProjectOut(project, context={"roles": {project.pk: "admin"}}).data, status=201)


class ProjectDetailView(ProjectScopedView):
    roles = {"get": ALL_ROLES, "patch": ADMINS}

    @extend_schema(responses=s.ProjectOut)
    def get(self, request, project_id):
        return Response(s.ProjectOut(self.project, context={"roles": {self.project.pk: self.membership.role}}).data)

    @extend_schema(request=s.ProjectSettingsIn, responses=s.ProjectOut)
    def patch(self, request, project_id):
        data = s.ProjectSettingsIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = projects.update_project_settings(project=self.project, actor=request.user, **data.validated_data)
        return Response(s.ProjectOut(project, context={"roles": {project.pk: self.membership.role}}).data)


# --- members --------------------------------------------------------------------------------------
class MemberListView(ProjectScopedView):
    roles = {"get": STAFF, "post": ADMINS}

    @extend_schema(responses=s.MemberOut(many=True))
    def get(self, request, project_id):
        members = self.project.memberships.select_related("user").order_by("id")
        return Response(s.MemberOut(members, many=True).data)

    @extend_schema(request=s.MemberIn, responses={201: s.MemberOut})
    def post(self, request, project_id):
        data = s.MemberIn(data=request.data)
        data.is_valid(raise_exception=True)
        user = User.objects.filter(username=data.validated_data["username"], is_active=True).first()
        if user is None:
            raise ValidationError({"username": ["No active user with this username."]})
        membership = projects.set_member(project=self.project, user=user, role=data.validated_data["role"],
                                         actor=request.user)
        return Response(s.MemberOut(membership).data, status=201)


class MemberDetailView(ProjectScopedView):
    roles = {"patch": ADMINS, "delete": ADMINS}

    def _user(self, user_id):
        membership = self.project.memberships.select_related("user").filter(user_id=user_id).first()
        if membership is None:
            raise NotFound()
        return membership.user

    @extend_schema(request=s.MemberRoleIn, responses=s.MemberOut)
    def patch(self, request, project_id, user_id):
        user = self._user(user_id)  # an unknown id is 404 before any body is looked at
        data = s.MemberRoleIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership = projects.set_member(project=self.project, user=user, role=data.validated_data["role"],
                                         actor=request.user)
        return Response(s.MemberOut(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request, project_id, user_id):
        projects.remove_member(project=self.project, user=self._user(user_id), actor=request.user)
        return Response(status=204)


# --- instructions ---------------------------------------------------------------------------------
class InstructionListView(ProjectScopedView):
    roles = {"get": ALL_ROLES, "post": ADMINS}

    @extend_schema(responses=s.InstructionOut(many=True))
    def get(self, request, project_id):
        versions = self.project.instruction_versions.select_related("created_by").order_by("-number")
        return Response(s.InstructionOut(versions, many=True).data)

    @extend_schema(request=s.InstructionIn, responses={201: s.InstructionOut})
    def post(self, request, project_id):
        data = s.InstructionIn(data=request.data)
        data.is_valid(raise_exception=True)
        version = instructions.publish_instructions(project=self.project, published_by=request.user,
                                                    **data.validated_data)
        return Response(s.InstructionOut(version).data, status=201)


class InstructionDetailView(ProjectScopedView):
    roles = {"get": ALL_ROLES}

    @extend_schema(responses=s.InstructionOut)
    def get(self, request, project_id, number):
        version = InstructionVersion.objects.select_related("created_by").filter(
            project=self.project, number=number).first()
        if version is None:
            raise NotFound()
        return Response(s.InstructionOut(version).data)


# --- imports --------------------------------------------------------------------------------------
class ImportListView(ProjectScopedView):
    roles = {"get": frozenset({"admin", "engineer"}), "post": ADMINS}
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=s.ImportOut(many=True))
    def get(self, request, project_id):
        return Response(s.ImportOut(self.project.imports.all()[:100], many=True).data)

    @extend_schema(request=s.ImportIn, responses={202: s.ImportOut})
    def post(self, request, project_id):
        data = s.ImportIn(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        batch = imports.start_import(project=self.project, upload=upload, created_by=request.user,
                                     fmt=data.validated_data.get("format") or _format_from_name(upload.name),
                                     default_kind=data.validated_data["kind"])
        return Response(s.ImportOut(batch).data, status=202)


def _format_from_name(name: str) -> str:
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lower.endswith(".csv"):
        return "csv"
    raise ValidationError({"format": ["Cannot tell the format from the file name; say format=jsonl or csv."]})


class ImportFromURLView(ProjectScopedView):
    """Import a JSONL or CSV file that the worker fetches from a public http(s) URL."""

    roles = {"post": ADMINS}
    parser_classes = [JSONParser, FormParser]

    @extend_schema(request=s.ImportURLIn, responses={202: s.ImportOut})
    def post(self, request, project_id):
        data = s.ImportURLIn(data=request.data)
        data.is_valid(raise_exception=True)
        batch = url_imports.start_url_import(project=self.project, url=data.validated_data["url"],
                                             fmt=data.validated_data.get("format"), created_by=request.user,
                                             default_kind=data.validated_data["kind"])
        return Response(s.ImportOut(batch).data, status=202)


class ImportDetailView(ProjectScopedView):
    roles = {"get": frozenset({"admin", "engineer"})}

    @extend_schema(responses=s.ImportOut)
    def get(self, request, project_id, import_id):
        batch = self.project.imports.filter(pk=import_id).first()
        if batch is None:
            raise NotFound()
        batch.progress_rows = cache.get(imports.progress_key(batch.pk))
        return Response(s.ImportOut(batch).data)


# --- tasks ----------------------------------------------------------------------------------------
class AllowListedCursorPagination(CursorPagination):
    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"
    orderings: dict[str, tuple[str, ...]] = {}

    def get_ordering(self, request, queryset, view):
        key = request.query_params.get("ordering", "id")
        if key not in self.orderings:
            raise ValidationError({"ordering": [f"Choose one of {sorted(self.orderings)}."]})
        return self.orderings[key]


class TaskPagination(AllowListedCursorPagination):
    orderings = selectors.TASK_ORDERING


class SubmissionPagination(AllowListedCursorPagination):
    orderings = {"id": ("id",), "-id": ("-id",)}


BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _check_params(request, allowed: set[str]) -> None:
    unknown = set(request.query_params) - allowed - {"cursor", "ordering", "page_size", "format"}
    if unknown:
        raise ValidationError({"detail": f"Unknown query parameter(s): {', '.join(sorted(unknown))}."})


def _check_choice(params, key: str, choices) -> None:
    value = params.get(key)
    if value not in (None, "") and value not in choices:
        raise ValidationError({key: [f"Choose one of {sorted(choices)}."]})


class TaskListView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(
        parameters=[OpenApiParameter("kind", str, enum=TaskKind.values),
                    OpenApiParameter("state", str, enum=Task.State.values),
                    OpenApiParameter("import_batch", int), OpenApiParameter("ordering", str,
                                                                            enum=list(selectors.TASK_ORDERING)),
                    OpenApiParameter("complete", bool, description="true: tasks with `overlap` accepted "
                                     "submissions; false: the others (gold tasks are neither)")],
        responses=s.TaskOut(many=True),
    )
    def get(self, request, project_id):
        _check_params(request, set(selectors.TASK_FILTERS))
        filters = {k: request.query_params.get(k) for k in selectors.TASK_FILTERS}
        if filters["import_batch"] not in (None, "") and not filters["import_batch"].isdigit():
            raise ValidationError({"import_batch": ["Must be an integer."]})
        _check_choice(filters, "kind", TaskKind.values)
        _check_choice(filters, "state", Task.State.values)
        if filters["complete"] not in (None, ""):
            flag = BOOLEAN_WORDS.get(filters["complete"].lower())
            if flag is None:
                raise ValidationError({"complete": ["Must be true or false."]})
            filters["complete"] = flag
        tasks = selectors.task_list(project=self.project, filters=filters)
        paginator = TaskPagination()
        page = paginator.paginate_queryset(tasks, request, view=self)
        return paginator.get_paginated_response(s.task_rows(page))


class TaskCountsView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(responses=s.TaskCountsOut)
    def get(self, request, project_id):
        return Response(s.TaskCountsOut(selectors.task_counts(project=self.project)).data)


class TaskDetailView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(responses=s.TaskDetailOut)
    def get(self, request, project_id, task_id):
        task = self.project.tasks.filter(pk=task_id).first()
        if task is None:
            raise NotFound()
        return Response(s.TaskDetailOut(selectors.task_with_replies(task_id=task.pk)).data)


# --- leases ---------------------------------------------------------------------------------------
def _lease_out(lease) -> dict:
    if "task" in lease._state.fields_cache:  # a fresh lease brings its task: only the replies are missing
        selectors.load_replies(lease.task)
    else:
        lease.task = selectors.task_with_replies(task_id=lease.task_id)
    if "instruction_version" not in lease._state.fields_cache:
        lease.instruction_version = InstructionVersion.objects.get(pk=lease.instruction_version_id)
    return s.lease_row(lease)


class NextTaskView(ProjectScopedView):
    roles = {"post": LABELLERS}

    @extend_schema(request=s.NextTaskIn, responses={201: s.LeaseOut})
    def post(self, request, project_id):
        data = s.NextTaskIn(data=request.data)
        data.is_valid(raise_exception=True)
        kind = data.validated_data.get("kind")
        lease = leases.lease_next_task(project=self.project, annotator=request.user, kinds=(kind,) if kind else None)
        return Response(_lease_out(lease), status=201)


class LeaseListView(ProjectScopedView):
    roles = {"get": LABELLERS}

    @extend_schema(responses=s.LeaseOut(many=True))
    def get(self, request, project_id):
        mine = selectors.open_leases(project=self.project, annotator=request.user).select_related("instruction_version")
        return Response([_lease_out(lease) for lease in mine[:100]])


class _LeaseActionView(ProjectScopedView):
    roles = {"post": LABELLERS}

    def _lease(self, request, lease_id):
        lease = selectors.lease_for_annotator(project=self.project, annotator=request.user, lease_id=lease_id,
                                              with_task_kind=True)
        if lease is None:
            raise NotFound()
        return lease


class SubmitView(_LeaseActionView):
    parser_classes = [JSONParser]

    # task kind -> (input serializer, service)
    BY_KIND = {
        TaskKind.DEMONSTRATION: (s.DemonstrationIn, submissions.submit_demonstration),
        TaskKind.COMPARISON: (s.RankingIn, submissions.submit_ranking),
        TaskKind.RED_TEAM: (feedback_s.RedTeamOutcomeIn, redteam.submit_red_team),
    }

    @extend_schema(request=PolymorphicProxySerializer(
        component_name="SubmitIn", serializers=[s.DemonstrationIn, s.RankingIn, feedback_s.RedTeamOutcomeIn],
        resource_type_field_name=None), responses={201: s.SubmissionOut, 200: s.SubmissionOut})
    def post(self, request, lease_id, project_id):
        lease = self._lease(request, lease_id)
        serializer, service = self.BY_KIND[lease.task_kind]
        data = serializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        submission = service(lease_id=lease.pk, annotator=request.user, **fields)
        if getattr(submission, "replayed", False):
            submission = Submission.objects.select_related("instruction_version", "annotator", "reply").prefetch_related(
                "reviews__reviewer", "reviews__fixed_reply").get(pk=submission.pk)
            return Response(s.SubmissionOut(submission).data, status=200)
        # Made by this request: everything the output needs is in memory, and no review exists yet.
        return Response(s.SubmissionOut(submission, context={"unreviewed": True}).data, status=201)


class SkipView(_LeaseActionView):
    @extend_schema(request=s.SkipIn, responses={200: None})
    def post(self, request, lease_id, project_id):
        lease = self._lease(request, lease_id)
        data = s.SkipIn(data=request.data)
        data.is_valid(raise_exception=True)
        lease = leases.skip_lease(lease_id=lease.pk, annotator=request.user, reason=data.validated_data["reason"])
        return Response({"id": lease.pk, "status": lease.status})


class ReleaseView(_LeaseActionView):
    @extend_schema(request=s.ReleaseIn, responses={200: None})
    def post(self, request, lease_id, project_id):
        lease = self._lease(request, lease_id)
        data = s.ReleaseIn(data=request.data)
        data.is_valid(raise_exception=True)
        lease = leases.release_lease(lease_id=lease.pk, annotator=request.user, reason=data.validated_data["reason"])
        return Response({"id": lease.pk, "status": lease.status})


# --- submissions and stats ------------------------------------------------------------------------
class SubmissionListView(ProjectScopedView):
    roles = {"get": ALL_ROLES}

    @extend_schema(parameters=[OpenApiParameter("kind", str, enum=TaskKind.values),
                               OpenApiParameter("status", str, enum=Submission.Status.values)],
                   responses=s.SubmissionOut(many=True))
    def get(self, request, project_id):
        _check_params(request, {"kind", "status"})
        _check_choice(request.query_params, "kind", TaskKind.values)
        _check_choice(request.query_params, "status", Submission.Status.values)
        subs = selectors.submissions_visible_to(project=self.project, user=request.user,
                                                role=self.membership.role).select_related("annotator").prefetch_related(
            "reviews__reviewer", "reviews__fixed_reply")
        for key in ("kind", "status"):
            if request.query_params.get(key):
                subs = subs.filter(**{key: request.query_params[key]})
        paginator = SubmissionPagination()
        page = paginator.paginate_queryset(subs, request, view=self)
        return paginator.get_paginated_response(s.SubmissionOut(page, many=True).data)


class SubmissionDetailView(ProjectScopedView):
    roles = {"get": ALL_ROLES}

    @extend_schema(responses=s.SubmissionOut)
    def get(self, request, project_id, submission_id):
        subs = selectors.submissions_visible_to(project=self.project, user=request.user, role=self.membership.role)
        submission = subs.select_related("annotator").prefetch_related(
            "reviews__reviewer", "reviews__fixed_reply").filter(pk=submission_id).first()
        if submission is None:
            raise NotFound()
        return Response(s.SubmissionOut(submission).data)


class SubmissionReviewView(ProjectScopedView):
    roles = {"post": frozenset({"admin", "reviewer"})}

    @extend_schema(request=s.ReviewIn, responses={201: s.ReviewOut})
    def post(self, request, project_id, submission_id):
        if not self.project.submissions.filter(pk=submission_id).exists():
            raise NotFound()
        data = s.ReviewIn(data=request.data)
        data.is_valid(raise_exception=True)
        review = reviews.review_submission(submission_id=submission_id, reviewer=request.user,
                                           decision=data.validated_data["decision"],
                                           reason=data.validated_data["reason"],
                                           fixed_text=data.validated_data.get("text"))
        return Response(s.ReviewOut(review).data, status=201)


class MyStatsView(ProjectScopedView):
    roles = {"get": ALL_ROLES}

    @extend_schema(responses=s.StatsOut)
    def get(self, request, project_id):
        return Response(s.StatsOut(selectors.annotator_stats(project=self.project, annotator=request.user)).data)



# --- audit log ------------------------------------------------------------------------------------
class AuditPagination(AllowListedCursorPagination):
    orderings = {"-id": ("-id",), "id": ("id",)}

    def get_ordering(self, request, queryset, view):
        # Newest first unless asked otherwise.
        if "ordering" not in request.query_params:
            return ("-id",)
        return super().get_ordering(request, queryset, view)


class AuditListView(ProjectScopedView):
    """What the project's admins (and the system) did in this project, newest first."""

    roles = {"get": ADMINS}

    @extend_schema(parameters=[OpenApiParameter("action", str, enum=AuditEntry.Action.values)],
                   responses=s.AuditEntryOut(many=True))
    def get(self, request, project_id):
        _check_params(request, {"action"})
        action = request.query_params.get("action", "")
        if action and action not in AuditEntry.Action.values:
            raise ValidationError({"action": [f"Choose one of {sorted(AuditEntry.Action.values)}."]})
        entries = selectors.audit_entries(project=self.project, action=action or None)
        paginator = AuditPagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(s.AuditEntryOut(page, many=True).data)
