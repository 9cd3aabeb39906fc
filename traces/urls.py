from django.urls import path

from traces import views
from traces.datasets import views as datasets

urlpatterns = [
    path("", views.trace_list, name="trace-list"),
    path("upload/", views.trace_upload, name="trace-upload"),
    path("upload/file/", views.trace_upload_file, name="trace-upload-file"),
    path("compare/", views.trace_compare, name="trace-compare"),
    path("bulk/", views.trace_bulk, name="trace-bulk"),
    path("summary/", views.trace_summary, name="trace-summary"),
    path("<int:pk>/", views.trace_detail, name="trace-detail"),
    path("<int:pk>/score/", views.trace_score, name="trace-score"),
    path("<int:pk>/review/", views.trace_review, name="trace-review"),
    path("<int:pk>/delete/", views.trace_delete, name="trace-delete"),
]

# Mounted under /datasets/ by the project urls.
dataset_urlpatterns = [
    path("", datasets.dataset_list, name="dataset-list"),
    path("new/", datasets.dataset_build, name="dataset-build"),
    path("preview/", datasets.dataset_preview, name="dataset-preview"),
    path("<str:key>/", datasets.dataset_detail, name="dataset-detail"),
    path("<str:key>/export/", datasets.dataset_export, name="dataset-export"),
    path("<str:key>/delete/", datasets.dataset_delete, name="dataset-delete"),
]
