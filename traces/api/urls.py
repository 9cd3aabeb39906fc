from rest_framework.routers import SimpleRouter

from traces.api.views import TraceViewSet
from traces.datasets.api import DatasetViewSet

# "api-" prefixes: the page views own "trace-list", "dataset-detail", ...
router = SimpleRouter(trailing_slash=False)
router.register("traces", TraceViewSet, basename="api-trace")
router.register("datasets", DatasetViewSet, basename="api-dataset")

urlpatterns = router.urls
