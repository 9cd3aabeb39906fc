from django.urls import path
from rest_framework.routers import SimpleRouter

from runs.api.evaluation import (
    BaselineViewSet,
    EvalSetViewSet,
    EvaluationViewSet,
    RegisteredModelViewSet,
    compare_view,
    leaderboard_view,
)
from runs.api.views import RunViewSet

router = SimpleRouter(trailing_slash=False)
router.register("runs", RunViewSet, basename="api-run")
router.register("eval-sets", EvalSetViewSet, basename="api-evalset")
router.register("evaluations", EvaluationViewSet, basename="api-evaluation")
router.register("regression/baselines", BaselineViewSet, basename="api-baseline")
router.register("models", RegisteredModelViewSet, basename="api-model")

urlpatterns = [
    path("leaderboard", leaderboard_view, name="api-leaderboard"),
    path("evaluations/compare", compare_view, name="api-evaluation-compare"),
    *router.urls,
]
