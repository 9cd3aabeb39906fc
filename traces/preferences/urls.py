from django.urls import path

from traces.preferences import views

# Mounted under /preferences/ by the project urls.
urlpatterns = [
    path("", views.pair_list, name="pair-list"),
    path("from-compare/", views.pair_from_compare, name="pair-from-compare"),
    path("from-evaluations/", views.pairs_from_evaluations_page, name="pairs-from-evaluations"),
    path("<int:pk>/", views.pair_detail, name="pair-detail"),
    path("<int:pk>/delete/", views.pair_delete, name="pair-delete"),
]
