"""Data-attack screening in the pages: every scan's findings of a project, and the one-click
exclusion (POST, admins only) that keeps a finding's tasks out of later snapshots. The import
report shows its own batch's findings with the same partial."""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from annotations.errors import DomainError
from annotations.models import DataFinding, DataScan, Role
from annotations.permissions import ADMINS, STAFF
from annotations.screening.service import exclude_finding as exclude_service

from .access import membership_or_404, project_page


def findings_context(*, project, membership, scans) -> dict:
    scans = list(scans)
    findings = DataFinding.objects.filter(scan__in=scans).select_related("scan", "excluded_by").order_by(
        "scan", "-score", "id")
    by_scan: dict[int, list] = {}
    for finding in findings:
        by_scan.setdefault(finding.scan_id, []).append(finding)
    return {"scans": [(scan, by_scan.get(scan.pk, [])) for scan in scans],
            "can_exclude": membership.role == Role.ADMIN}


@project_page(get=STAFF)
def screening(request, project_id: int):
    membership = membership_or_404(request, project_id, STAFF)
    project = membership.project
    scans = DataScan.objects.filter(project=project).select_related("import_batch", "snapshot")[:50]
    return render(request, "frontend/screening.html", {
        "project": project, "membership": membership, **findings_context(project=project, membership=membership,
                                                                          scans=scans)})


@project_page(post=ADMINS)
def exclude_finding(request, project_id: int, finding_id: int):
    membership = membership_or_404(request, project_id, ADMINS)
    if not DataFinding.objects.filter(project=membership.project, pk=finding_id).exists():
        raise Http404("No such finding.")  # another project's finding is as missing as one that never was
    try:
        finding, excluded, rebuilt = exclude_service(finding_id=finding_id, project=membership.project,
                                                     by=request.user, rebuild=request.POST.get("rebuild") == "1")
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        text = f"Excluded {excluded} task{'s' if excluded != 1 else ''} of finding {finding.pk} from later snapshots."
        if rebuilt is not None:
            text += f" Snapshot {rebuilt.pk} is being built without them."
        messages.success(request, text)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}) or not target.startswith("/"):
        target = f"/projects/{project_id}/screening/"
    return redirect(target)
