import os

from celery import Celery
from celery.signals import worker_ready

from .broker import install as install_broker_fix

install_broker_fix()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelstudio_app.settings.dev")

app = Celery("labelstudio_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _recover_on_start(sender, **kwargs):
    """A worker that (re)starts looks for jobs a dead worker left behind (annotations.recovery)
    instead of waiting for beat or for the broker's visibility timeout."""
    sender.app.send_task("annotations.recover_interrupted_work")
