from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from runs.urls import evaluation_urlpatterns
from traces.urls import dataset_urlpatterns
from tunixrt import metrics, views

api_patterns: list[URLPattern | URLResolver] = [
    path("", views.ApiRoot.as_view(), name="api-root"),
    path("health", views.HealthView.as_view(), name="api-health"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # A page for people: without a session it sends them to the login, like every page (the
    # schema it loads answers 403, like the rest of the API; SPECTACULAR_SETTINGS.SERVE_PERMISSIONS).
    path("docs/", login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="api-docs"),
    path("", include("traces.api.urls")),
    path("", include("runs.api.urls")),
    re_path(r"", views.ApiNotFound.as_view()),  # last: any other /api/ URL gets a JSON 404
]

urlpatterns = [
    path("api/", include(api_patterns)),  # first: API calls are most of the traffic, resolved in fewer steps
    path("", views.dashboard, name="dashboard"),
    path("health/cards", views.health_cards, name="health-cards"),
    path("account/token", views.api_token, name="api-token"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("traces/", include("traces.urls")),
    path("datasets/", include(dataset_urlpatterns)),
    path("preferences/", include("traces.preferences.urls")),
    path("runs/", include("runs.urls")),
    path("", include(evaluation_urlpatterns)),
    path("api-auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
    path("metrics", metrics.metrics_view, name="metrics"),
]
