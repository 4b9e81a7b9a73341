from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from .health import healthz

# Database errors that escape the views answer 503 like those inside them (database_errors).
handler500 = "labelstudio_app.database_errors.server_error"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", include("annotations.api.urls")),
    path("api/", include("models_service.urls")),
    path("api/", include("annotations.exports.urls")),
    path("api/", include("annotations.quality.urls")),
    path("api/", include("annotations.screening.urls")),
    path("api/", include("models_service.finetune.urls")),
    path("api/", include("annotations.feedback.urls")),
    path("api/", include("models_service.evaluation.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("", include("frontend.urls")),
]
