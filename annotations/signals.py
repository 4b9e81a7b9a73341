"""Signals other apps subscribe to, so the ground-floor app never imports them."""
from django.dispatch import Signal

# Sent after the transaction that stored a submission commits. kwargs: submission_id.
submission_created = Signal()

# Sent after an import batch finished and its tasks are committed. kwargs: batch_id.
import_finished = Signal()

# Sent after a red-team turn that waits for the model's reply is committed (a new message, or a
# retry of a failed or lost reply). kwargs: turn_id. models_service generates the reply.
red_team_turn_requested = Signal()
