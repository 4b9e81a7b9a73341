"""HTTP for deployment feedback: the token-authenticated report endpoint, report tokens, the triage
queue, red-team briefs and the red-team chat of a lease. Thin: parse, call one service, render."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ..api.views import AllowListedCursorPagination, ProjectScopedView, _check_params
from ..errors import InvalidInput
from ..models import Lease, TaskKind
from ..permissions import ADMINS, LABELLERS, STAFF
from . import redteam, reports, selectors, tokens
from . import serializers as s
from .auth import HasReportToken, ReportAddressThrottle, ReportTokenAuthentication, ReportTokenThrottle
from .models import ReportToken


# --- ingestion ------------------------------------------------------------------------------------
class ReportIngestView(APIView):
    """``POST /api/feedback/reports/`` with ``Authorization: Bearer <report token>``: one report, or
    ``{"reports": [...]}`` (up to FEEDBACK_MAX_REPORTS_PER_REQUEST). Each report is validated on its
    own: in a batch, a bad report is answered with its errors and the good ones are kept."""

    authentication_classes = [ReportTokenAuthentication]
    permission_classes = [HasReportToken]
    throttle_classes = [ReportTokenThrottle]
    parser_classes = [JSONParser]

    def initial(self, request, *args, **kwargs):
        # Before authentication (DRF throttles after it), so a flood of made-up tokens is limited too.
        address = ReportAddressThrottle()
        if not address.allow_request(request, self):
            self.throttled(request, address.wait())
        super().initial(request, *args, **kwargs)

    @extend_schema(
        request=PolymorphicProxySerializer(component_name="ReportIngestIn", serializers=[s.ReportIn, s.ReportBatchIn],
                                           resource_type_field_name=None),
        responses={201: s.IngestResultOut, 200: s.IngestResultOut, 207: s.IngestBatchOut,
                   400: OpenApiResponse(description="Invalid report(s); nothing of a single report is stored."),
                   401: OpenApiResponse(description="Missing, unknown or revoked report token."),
                   413: OpenApiResponse(description="Body too large."),
                   429: OpenApiResponse(description="Rate limited.")},
        auth=[{"reportToken": []}],
    )
    def post(self, request):
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > settings.FEEDBACK_MAX_BODY_BYTES:
            return Response({"error": "too_large", "detail": f"The body is {length} bytes; the limit is "
                                                             f"{settings.FEEDBACK_MAX_BODY_BYTES}."}, status=413)
        body = request.data
        token: ReportToken = request.auth
        if isinstance(body, dict) and set(body) == {"reports"}:
            return self._batch(token, body["reports"])
        result = _ingest_one(token, body)
        if result["result"] == "invalid":
            return Response({"error": "invalid", **result["errors"]}, status=400)
        return Response(result, status=201 if result["result"] == "created" else 200)

    def _batch(self, token, items):
        limit = settings.FEEDBACK_MAX_REPORTS_PER_REQUEST
        if not isinstance(items, list) or not items:
            raise ValidationError({"reports": ["Must be a non-empty list of reports."]})
        if len(items) > limit:
            raise ValidationError({"reports": [f"At most {limit} reports per request; {len(items)} sent."]})
        results = [{"index": i, **_ingest_one(token, item)} for i, item in enumerate(items)]
        counts = {k: sum(r["result"] == k for r in results) for k in ("created", "deduplicated", "invalid")}
        if counts["invalid"] == len(results):
            status = 400
        elif counts["invalid"]:
            status = 207  # some stored, some refused: read each result
        else:
            status = 201 if counts["created"] else 200
        return Response({"results": results, **counts}, status=status)


def _ingest_one(token, data) -> dict:
    try:
        clean = reports.clean_report(data)
    except InvalidInput as exc:
        return {"result": "invalid", "errors": {exc.details.get("field", "non_field_errors"): [exc.message]}}
    outcome = reports.ingest_report(token=token, report=clean)
    return {"result": "created" if outcome.created else "deduplicated", "id": outcome.report.pk,
            "times_reported": outcome.report.times_reported, "report_status": outcome.report.status}


# --- tokens ---------------------------------------------------------------------------------------
class ReportTokenListView(ProjectScopedView):
    roles = {"get": ADMINS, "post": ADMINS}

    @extend_schema(responses=s.ReportTokenOut(many=True))
    def get(self, request, project_id):
        items = self.project.report_tokens.select_related("created_by", "revoked_by")[:200]
        return Response(s.ReportTokenOut(items, many=True).data)

    @extend_schema(request=s.ReportTokenIn, responses={201: s.IssuedReportTokenOut})
    def post(self, request, project_id):
        data = s.ReportTokenIn(data=request.data)
        data.is_valid(raise_exception=True)
        issued = tokens.create_report_token(project=self.project, name=data.validated_data["name"],
                                            created_by=request.user)
        return Response(s.IssuedReportTokenOut(issued.token, context={"secret": issued.secret}).data, status=201)


class ReportTokenRevokeView(ProjectScopedView):
    roles = {"post": ADMINS}

    @extend_schema(request=None, responses=s.ReportTokenOut)
    def post(self, request, project_id, token_id):
        token = tokens.revoke_report_token(project=self.project, token_id=token_id, revoked_by=request.user)
        return Response(s.ReportTokenOut(token).data)


# --- triage ---------------------------------------------------------------------------------------
class ReportPagination(AllowListedCursorPagination):
    orderings = selectors.REPORT_ORDERING


class ReportListView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=list(selectors.REPORT_FILTERS["status"][1])),
                    OpenApiParameter("category", str, enum=list(selectors.REPORT_FILTERS["category"][1])),
                    OpenApiParameter("source", str, enum=list(selectors.REPORT_FILTERS["source"][1])),
                    OpenApiParameter("model_version", str),
                    OpenApiParameter("ordering", str, enum=list(selectors.REPORT_ORDERING))],
        responses=s.ReportSummaryOut(many=True),
    )
    def get(self, request, project_id):
        _check_params(request, set(selectors.REPORT_FILTERS))
        try:
            items = selectors.report_list(project=self.project, filters=request.query_params)
        except selectors.FilterError as exc:
            raise ValidationError({exc.field: [exc.message]}) from None
        paginator = ReportPagination()
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response(s.ReportSummaryOut(page, many=True).data)


class _ReportView(ProjectScopedView):
    def _exists(self, report_id):
        if not self.project.reports.filter(pk=report_id).exists():
            raise NotFound()


class ReportDetailView(_ReportView):
    roles = {"get": STAFF}

    @extend_schema(responses=s.ReportOut)
    def get(self, request, project_id, report_id):
        report = selectors.report_detail(project=self.project, report_id=report_id)
        if report is None:
            raise NotFound()
        return Response(s.ReportOut(report).data)


class ReportCreateTasksView(_ReportView):
    roles = {"post": ADMINS}

    @extend_schema(request=s.CreateTasksIn, responses={201: s.CreateTasksOut, 200: s.CreateTasksOut})
    def post(self, request, project_id, report_id):
        self._exists(report_id)
        data = s.CreateTasksIn(data=request.data)
        data.is_valid(raise_exception=True)
        links, created = reports.create_tasks_for_report(project=self.project, report_id=report_id,
                                                         created_by=request.user,
                                                         turns=data.validated_data.get("turns"))
        report = self.project.reports.get(pk=report_id)
        body = {"report": report.pk, "status": report.status, "created": created,
                "tasks": s.ReportTaskOut(links, many=True).data}
        return Response(body, status=201 if created else 200)


class ReportDismissView(_ReportView):
    roles = {"post": ADMINS}

    @extend_schema(request=s.DismissIn, responses=s.ReportSummaryOut)
    def post(self, request, project_id, report_id):
        self._exists(report_id)
        data = s.DismissIn(data=request.data)
        data.is_valid(raise_exception=True)
        report = reports.dismiss_report(project=self.project, report_id=report_id, dismissed_by=request.user,
                                        reason=data.validated_data["reason"])
        return Response(s.ReportSummaryOut(report).data)


class ReportDuplicateView(_ReportView):
    roles = {"post": ADMINS}

    @extend_schema(request=s.DuplicateIn, responses=s.ReportSummaryOut)
    def post(self, request, project_id, report_id):
        self._exists(report_id)
        data = s.DuplicateIn(data=request.data)
        data.is_valid(raise_exception=True)
        report = reports.mark_duplicate(project=self.project, report_id=report_id, marked_by=request.user,
                                        original_id=data.validated_data["of"])
        return Response(s.ReportSummaryOut(report).data)


# --- red team -------------------------------------------------------------------------------------
class RedTeamBriefListView(ProjectScopedView):
    roles = {"get": STAFF, "post": ADMINS}

    @extend_schema(responses=s.RedTeamTaskOut(many=True))
    def get(self, request, project_id):
        return Response(s.RedTeamTaskOut(selectors.red_team_tasks(project=self.project)[:500], many=True).data)

    @extend_schema(request=s.RedTeamBriefIn, responses={201: s.RedTeamTaskOut, 200: s.RedTeamTaskOut})
    def post(self, request, project_id):
        data = s.RedTeamBriefIn(data=request.data)
        data.is_valid(raise_exception=True)
        task, created = redteam.create_brief(project=self.project, **data.validated_data)
        return Response(s.RedTeamTaskOut(task).data, status=201 if created else 200)


class _RedTeamLeaseView(ProjectScopedView):
    roles = {"get": LABELLERS, "post": LABELLERS}

    def _lease(self, request, lease_id) -> Lease:
        lease = (Lease.objects.select_related("task").filter(project=self.project, annotator=request.user,
                                                             pk=lease_id, task__kind=TaskKind.RED_TEAM).first())
        if lease is None:
            raise NotFound()
        return lease


class RedTeamSessionView(_RedTeamLeaseView):
    roles = {"get": LABELLERS}

    @extend_schema(responses=s.RedTeamSessionOut)
    def get(self, request, project_id, lease_id):
        return Response(session_state(self._lease(request, lease_id)))


class RedTeamMessageView(_RedTeamLeaseView):
    roles = {"post": LABELLERS}
    parser_classes = [JSONParser]

    @extend_schema(request=s.RedTeamMessageIn, responses={202: s.RedTeamSessionOut})
    def post(self, request, project_id, lease_id):
        lease = self._lease(request, lease_id)
        data = s.RedTeamMessageIn(data=request.data)
        data.is_valid(raise_exception=True)
        redteam.post_message(lease_id=lease.pk, annotator=request.user, **data.validated_data)
        return Response(session_state(lease), status=202)


class RedTeamRetryView(_RedTeamLeaseView):
    roles = {"post": LABELLERS}

    @extend_schema(request=None, responses={202: s.RedTeamSessionOut})
    def post(self, request, project_id, lease_id):
        lease = self._lease(request, lease_id)
        redteam.retry_model_turn(lease_id=lease.pk, annotator=request.user)
        return Response(session_state(lease), status=202)


def session_state(lease: Lease) -> dict:
    """The chat of a red-team lease as the page and API clients see it (re-read from the database)."""
    lease.refresh_from_db(fields=["status"])
    session = selectors.red_team_session_for_lease(lease=lease)
    turns = list(session.turns.all()) if session else []
    last = turns[-1] if turns else None
    waiting = bool(last and last.role == "assistant" and last.status == "pending")
    can_retry = bool(last and last.role == "assistant"
                     and (last.status == "failed" or redteam.is_stale(last)))
    report = getattr(session, "report", None) if session else None
    limits = s.limits()
    user_turns = sum(t.role == "user" for t in turns)
    return s.RedTeamSessionOut({
        "lease": lease.pk, "task": lease.task, "session": session.pk if session else None,
        "status": session.status if session else "active", "outcome": session.outcome if session else "",
        "category": session.category if session else "", "turns": turns, "waiting_for_model": waiting,
        "can_retry": can_retry and (session is None or session.status == "active"), "limits": limits,
        "user_turns_left": max(0, limits["max_user_turns"] - user_turns),
        "chars_left": max(0, limits["max_conversation_chars"] - redteam.chars_used(lease.task, turns)),
        "report": report.pk if report else None,
        "tasks": [link.task_id for link in report.task_links.all()] if report else [],
    }).data
