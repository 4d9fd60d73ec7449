"""URLs of the JSON API, included under /api/ by web.urls."""

from django.urls import path, re_path
from rest_framework.routers import DefaultRouter

from web.api import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("receivers", views.ReceiverViewSet, basename="api-receiver")
router.register("transmitters", views.TransmitterViewSet, basename="api-transmitter")
router.register("assignments", views.AssignmentViewSet, basename="api-assignment")
router.register("locations", views.LocationViewSet, basename="api-location")
router.register("connections", views.ConnectionViewSet, basename="api-connection")

urlpatterns = [
    path("board/", views.BoardView.as_view(), name="api-board"),
    path("schema/", views.SchemaView.as_view(), name="api-schema"),
    path("docs/", views.DocsView.as_view(), name="api-docs"),
    *router.urls,
    # Anything else under /api/ answers in the API's error shape, not with the HTML 404 page.
    re_path(r"^.*$", views.NotFoundView.as_view()),
]
