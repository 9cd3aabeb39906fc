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
