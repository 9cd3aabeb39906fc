from rest_framework.routers import SimpleRouter

from traces.api.views import TraceViewSet
from traces.datasets.api import DatasetViewSet
from traces.preferences.api import PreferencePairViewSet

# "api-" prefixes: the page views own "trace-list", "dataset-detail", ...
router = SimpleRouter(trailing_slash=False)
router.register("traces", TraceViewSet, basename="api-trace")
router.register("datasets", DatasetViewSet, basename="api-dataset")
router.register("preference-pairs", PreferencePairViewSet, basename="api-pair")

urlpatterns = router.urls
