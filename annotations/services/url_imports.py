"""Import from a URL: an admin names an http(s) URL of a JSONL or CSV file; the worker fetches it
through ``annotations.url_fetch`` (public addresses only, every redirect checked, size and time
limits) into storage, then imports it like an upload, all or nothing."""
from __future__ import annotations

import tempfile
import uuid
from posixpath import basename
from urllib.parse import unquote, urlsplit

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from .. import url_fetch
from ..errors import InvalidInput
from ..models import ImportBatch, Project
from . import audit


def format_from_name(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lower.endswith(".csv"):
        return "csv"
    return None


def start_url_import(*, project: Project, url: str, default_kind: str, created_by, fmt: str | None = None
                     ) -> ImportBatch:
    """Check the URL's shape (scheme, port, literal addresses; no network yet), record the batch
    and queue it. The worker resolves and checks the host again when it fetches: that check is
    the one that counts, since a name can point elsewhere by then."""
    from ..queueing import enqueue_on_commit
    from ..tasks import process_import

    target = url_fetch.check_url(url)
    label = unquote(basename(urlsplit(target.url).path)) or target.host
    fmt = fmt or format_from_name(label)
    if fmt not in ("jsonl", "csv"):
        raise InvalidInput("Cannot tell the format from the URL; say format=jsonl or csv.", field="format")
    with transaction.atomic():
        batch = ImportBatch.objects.create(project=project, file_name=label[:255], source_url=target.url, format=fmt,
                                           default_kind=default_kind, created_by=created_by)
        audit.record(action=audit.Action.IMPORT_STARTED, actor=created_by, project=project,
                     target=f"import {batch.pk}", details={"file_name": batch.file_name, "url": target.url})
        enqueue_on_commit(process_import, batch.pk)
    return batch


def fetch_into_storage(batch: ImportBatch, *, policy: url_fetch.FetchPolicy | None = None,
                       resolver: url_fetch.Resolver = url_fetch.system_resolver) -> url_fetch.FetchResult:
    """Fetch the batch's URL into storage under a random name and point the batch at it. Raises
    UnsafeURL or FetchFailed; nothing is stored then (a partial download is discarded)."""
    with tempfile.TemporaryFile() as spool:
        result = url_fetch.fetch(batch.source_url, spool, policy=policy, resolver=resolver)
        spool.seek(0)
        stored = default_storage.save(f"imports/{uuid.uuid4().hex}.{batch.format}", File(spool))
    ImportBatch.objects.filter(pk=batch.pk).update(file=stored)
    batch.file = stored
    return result
