from django.urls import path
from rest_framework.routers import SimpleRouter

from runs.api.views import RunViewSet, base_model_list
from runs.evaluation.api import EvalSetViewSet, EvaluationViewSet, compare_view, leaderboard_view
from runs.registry.api import RegisteredModelViewSet
from runs.regression.api import BaselineViewSet

router = SimpleRouter(trailing_slash=False)
router.register("runs", RunViewSet, basename="api-run")
router.register("eval-sets", EvalSetViewSet, basename="api-evalset")
router.register("evaluations", EvaluationViewSet, basename="api-evaluation")
router.register("regression/baselines", BaselineViewSet, basename="api-baseline")
router.register("models", RegisteredModelViewSet, basename="api-model")

urlpatterns = [
    path("base-models", base_model_list, name="api-base-models"),
    path("leaderboard", leaderboard_view, name="api-leaderboard"),
    path("evaluations/compare", compare_view, name="api-evaluation-compare"),
    *router.urls,
]
