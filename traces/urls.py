from django.urls import path

from traces import views

urlpatterns = [
    path("", views.trace_list, name="trace-list"),
    path("upload/", views.trace_upload, name="trace-upload"),
    path("upload/file/", views.trace_upload_file, name="trace-upload-file"),
    path("compare/", views.trace_compare, name="trace-compare"),
    path("<int:pk>/", views.trace_detail, name="trace-detail"),
    path("<int:pk>/score/", views.trace_score, name="trace-score"),
    path("<int:pk>/delete/", views.trace_delete, name="trace-delete"),
]

# Mounted under /datasets/ by the project urls.
dataset_urlpatterns = [
    path("", views.dataset_list, name="dataset-list"),
    path("new/", views.dataset_build, name="dataset-build"),
    path("preview/", views.dataset_preview, name="dataset-preview"),
    path("<str:key>/", views.dataset_detail, name="dataset-detail"),
    path("<str:key>/export/", views.dataset_export, name="dataset-export"),
    path("<str:key>/delete/", views.dataset_delete, name="dataset-delete"),
]
