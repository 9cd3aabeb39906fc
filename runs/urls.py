from django.urls import path

from runs import views
from runs.evaluation import views as evaluation
from runs.registry import views as registry
from runs.regression import views as regression

urlpatterns = [
    path("", views.run_list, name="run-list"),
    path("new/", views.run_launch, name="run-launch"),
    path("compare/", views.run_compare, name="run-compare"),
    path("<int:pk>/", views.run_detail, name="run-detail"),
    path("<int:pk>/row/", views.run_row, name="run-row"),
    path("<int:pk>/logs/", views.run_logs, name="run-logs"),
    path("<int:pk>/describe/", views.run_describe, name="run-describe"),
    path("<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("<int:pk>/retry/", views.run_retry, name="run-retry"),
    path("<int:pk>/delete/", views.run_delete, name="run-delete"),
    path("<int:pk>/artifacts/<path:path>", views.run_artifact, name="run-artifact"),
]

# Mounted at the project root: evaluation, leaderboard, regression gates, model registry.
evaluation_urlpatterns = [
    path("evaluations/", evaluation.evaluation_home, name="evaluation-home"),
    path("evaluations/compare/", evaluation.evaluation_compare, name="evaluation-compare"),
    path("evaluations/sets/<str:name>/", evaluation.evalset_detail, name="evalset-detail"),
    path("evaluations/<int:pk>/", evaluation.evaluation_detail, name="evaluation-detail"),
    path("evaluations/<int:pk>/cancel/", evaluation.evaluation_cancel, name="evaluation-cancel"),
    path("runs/<int:pk>/evaluate/", evaluation.run_evaluate, name="run-evaluate"),
    path("runs/<int:pk>/promote/", registry.run_promote, name="run-promote"),
    path("leaderboard/", evaluation.leaderboard_page, name="leaderboard"),
    path("regression/", regression.regression_page, name="regression"),
    path("models/base/", views.base_model_list, name="base-models"),
    path("models/", registry.model_registry, name="model-registry"),
    path("models/<str:name>/v<int:version>/download/", registry.model_download, name="model-download"),
]
