"""Signals other apps subscribe to, so the ground-floor app never imports them."""
from django.dispatch import Signal

# Sent after the transaction that stored a submission commits. kwargs: submission_id.
submission_created = Signal()

# Sent after an import batch finished and its tasks are committed. kwargs: batch_id.
import_finished = Signal()
