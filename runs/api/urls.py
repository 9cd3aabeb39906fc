from rest_framework.routers import SimpleRouter

from runs.api.views import RunViewSet

router = SimpleRouter(trailing_slash=False)
router.register("runs", RunViewSet, basename="api-run")

urlpatterns = router.urls
