from django.urls import path

from runs import views

urlpatterns = [
    path("", views.run_list, name="run-list"),
    path("new/", views.run_launch, name="run-launch"),
    path("compare/", views.run_compare, name="run-compare"),
    path("<int:pk>/", views.run_detail, name="run-detail"),
    path("<int:pk>/row/", views.run_row, name="run-row"),
    path("<int:pk>/logs/", views.run_logs, name="run-logs"),
    path("<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("<int:pk>/retry/", views.run_retry, name="run-retry"),
    path("<int:pk>/delete/", views.run_delete, name="run-delete"),
    path("<int:pk>/artifacts/<path:path>", views.run_artifact, name="run-artifact"),
]

# Mounted at the project root: evaluation, leaderboard, regression gates, model registry.
evaluation_urlpatterns = [
    path("evaluations/", views.evaluation_home, name="evaluation-home"),
    path("evaluations/compare/", views.evaluation_compare, name="evaluation-compare"),
    path("evaluations/sets/<str:name>/", views.evalset_detail, name="evalset-detail"),
    path("evaluations/<int:pk>/", views.evaluation_detail, name="evaluation-detail"),
    path("evaluations/<int:pk>/cancel/", views.evaluation_cancel, name="evaluation-cancel"),
    path("runs/<int:pk>/evaluate/", views.run_evaluate, name="run-evaluate"),
    path("runs/<int:pk>/promote/", views.run_promote, name="run-promote"),
    path("leaderboard/", views.leaderboard_page, name="leaderboard"),
    path("regression/", views.regression_page, name="regression"),
    path("models/", views.model_registry, name="model-registry"),
    path("models/<str:name>/v<int:version>/download/", views.model_download, name="model-download"),
]
