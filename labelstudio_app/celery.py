import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelstudio_app.settings.dev")

app = Celery("labelstudio_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
