from rest_framework.routers import SimpleRouter

from traces.api.views import TraceViewSet

router = SimpleRouter(trailing_slash=False)
router.register("traces", TraceViewSet, basename="trace")

urlpatterns = router.urls
