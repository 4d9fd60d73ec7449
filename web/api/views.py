"""API viewsets: thin over micboard.services (reads from the services' querysets, writes through them)."""

from __future__ import annotations

from django.db.models import Count
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.filters import OrderingFilter
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from micboard.exceptions import CoordinationError
from micboard.models import Assignment, Location
from micboard.query_optimization import QueryOptimizer
from micboard.services import (
    AssignmentService,
    BoardService,
    ConnectionHealthService,
    DeviceService,
    LocationService,
)
from micboard.services.health import HealthReport
from web.api import API_VERSION, API_VERSION_HEADER
from web.api.exceptions import FieldError
from web.api.filters import ReceiverFilterBackend
from web.api.permissions import RolePermission, ViewerPermission
from web.api.serializers import (
    AssignmentSerializer,
    BoardSerializer,
    ConnectionSerializer,
    HeartbeatSerializer,
    LocationSerializer,
    MoveReceiversSerializer,
    ReceiverSerializer,
    SyncStatusSerializer,
    TransmitterSerializer,
)

THRESHOLD = OpenApiParameter(
    "threshold", {"type": "integer", "minimum": 0, "maximum": 5}, description="Battery bars (0-5); default 2",
    required=False,
)


class ApiMixin:
    """What every API view shares: the version header, and throttling before permissions.

    Throttles run before the permission check, so an anonymous client probing the API is slowed
    down (429) like a signed-in one, instead of getting unlimited 401s.
    """

    def check_permissions(self, request) -> None:
        super().check_throttles(request)
        super().check_permissions(request)

    def check_throttles(self, request) -> None:
        """Done in check_permissions (so each request counts once)."""

    def handle_exception(self, exc):
        """Errors answer in JSON, even from the schema (YAML) and the docs page (HTML)."""
        if not isinstance(getattr(self.request, "accepted_renderer", None), JSONRenderer):
            self.request.accepted_renderer = JSONRenderer()
            self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response[API_VERSION_HEADER] = API_VERSION
        return response


def threshold_param(request) -> int:
    """``?threshold=`` as battery bars (0-5), 2 when absent. Raises FieldError naming it."""
    raw = request.query_params.get("threshold", "").strip()
    if not raw:
        return 2
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 5:
        raise FieldError("threshold", "A whole number of battery bars from 0 to 5.")
    return int(raw)


class ReadViewSet(ApiMixin, viewsets.ReadOnlyModelViewSet):
    permission_classes = [RolePermission]
    filter_backends = [ReceiverFilterBackend, OrderingFilter]


@extend_schema_view(list=extend_schema(responses={200: ReceiverSerializer(many=True)}))
class ReceiverViewSet(ReadViewSet):
    """Receivers with their channels, link and location."""

    serializer_class = ReceiverSerializer
    ordering_fields = ["name", "model", "host", "online", "last_seen", "id"]
    ordering = ["name", "id"]

    def get_queryset(self):
        return DeviceService.receivers_for_listing()

    @extend_schema(responses={200: ReceiverSerializer(many=True)})
    @action(detail=False)
    def online(self, request):
        """Monitored receivers that answer their polls."""
        return self._listing(DeviceService.get_online_receivers())

    @extend_schema(parameters=[THRESHOLD], responses={200: ReceiverSerializer(many=True)})
    @action(detail=False)
    def low_battery(self, request):
        """Receivers with a pack at or below ``threshold`` bars."""
        return self._listing(DeviceService.get_low_battery_receivers(threshold=threshold_param(request)))

    @extend_schema(
        request=None,
        responses={202: SyncStatusSerializer},
    )
    @action(detail=True, methods=["post"])
    def sync_status(self, request, pk=None):
        """Ask for a poll of this receiver in the next cycle (skipping its back-off); nothing is contacted here.

        503 when monitoring of the receiver is switched off (it is not polled).
        """
        receiver = self.get_object()
        DeviceService.sync_device_status(receiver=receiver)
        body = {"receiver": receiver.pk, "poll_requested": True, "message": "polled in the next cycle"}
        return Response(SyncStatusSerializer(body).data, status=status.HTTP_202_ACCEPTED)

    def _listing(self, queryset):
        queryset = self.filter_queryset(queryset)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class TransmitterViewSet(ReadViewSet):
    """Packs (one per channel) with their latest readings."""

    serializer_class = TransmitterSerializer
    receiver_path = "channel__receiver"
    ordering_fields = ["battery_bars", "runtime_minutes", "rf_percent", "last_seen", "id"]
    ordering = ["channel__board_position", "id"]

    def get_queryset(self):
        return DeviceService.transmitters_for_listing()

    @extend_schema(parameters=[THRESHOLD], responses={200: TransmitterSerializer(many=True)})
    @action(detail=False)
    def low_battery(self, request):
        """Packs switched on at or below ``threshold`` bars (default 2)."""
        queryset = self.filter_queryset(
            DeviceService.get_low_battery_transmitters(threshold=threshold_param(request))
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class AssignmentViewSet(ApiMixin, viewsets.ModelViewSet):
    """Who wears which pack. Writes need the operator role; every write updates the board."""

    serializer_class = AssignmentSerializer
    permission_classes = [RolePermission]
    filter_backends = [ReceiverFilterBackend, OrderingFilter]
    receiver_path = "channel__receiver"
    ordering_fields = ["priority", "performer__name", "created_at", "id"]
    ordering = ["-priority", "performer__name", "id"]

    def get_queryset(self):
        return QueryOptimizer.assignments_for_api()

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = AssignmentService.create_assignment(
            channel=data["channel"],
            performer=data["performer"]["name"],
            alerts_enabled=data.get("alerts_enabled", True),
            priority=data.get("priority", Assignment.Priority.NORMAL),
            notes=data.get("notes", ""),
        )

    def perform_update(self, serializer):
        data = serializer.validated_data
        serializer.instance = AssignmentService.update_assignment(
            assignment=serializer.instance,
            channel=data.get("channel"),
            performer=data.get("performer", {}).get("name"),
            alerts_enabled=data.get("alerts_enabled"),
            priority=data.get("priority"),
            notes=data.get("notes"),
        )

    def perform_destroy(self, instance):
        AssignmentService.delete_assignment(assignment=instance)


class LocationViewSet(ApiMixin, viewsets.ModelViewSet):
    """Where receivers are (racks, stage left ...). Writes need the operator role."""

    serializer_class = LocationSerializer
    permission_classes = [RolePermission]
    filter_backends = [OrderingFilter]
    ordering_fields = ["name", "created_at", "id"]
    ordering = ["name", "id"]

    def get_queryset(self):
        return Location.objects.annotate(receiver_count=Count("receivers"))

    def perform_create(self, serializer):
        data = serializer.validated_data
        location = LocationService.create_location(name=data["name"], description=data.get("description", ""))
        location.receiver_count = 0
        serializer.instance = location

    def perform_update(self, serializer):
        data = serializer.validated_data
        serializer.instance = LocationService.update_location(
            location=serializer.instance, name=data.get("name"), description=data.get("description")
        )

    def perform_destroy(self, instance):
        LocationService.delete_location(location=instance)

    @extend_schema(request=MoveReceiversSerializer, responses={200: LocationSerializer})
    @action(detail=True, methods=["post"])
    def receivers(self, request, pk=None):
        """Move receivers (by id) to this location, all or none."""
        location = self.get_object()
        body = MoveReceiversSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        LocationService.move_receivers_by_id(receiver_ids=body.validated_data["receivers"], location=location)
        return Response(LocationSerializer(self.get_queryset().get(pk=location.pk)).data)


class ConnectionViewSet(ApiMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Health of the link to each receiver, as the poller recorded it."""

    serializer_class = ConnectionSerializer
    permission_classes = [RolePermission]
    filter_backends = [ReceiverFilterBackend, OrderingFilter]
    receiver_path = "receiver"
    ordering_fields = ["consecutive_failures", "last_success_at", "last_latency_ms", "receiver__name", "id"]
    ordering = ["receiver__name", "id"]

    def get_queryset(self):
        return QueryOptimizer.connections_for_api()

    @extend_schema(responses={200: ConnectionSerializer(many=True)})
    @action(detail=False)
    def unhealthy(self, request):
        """Links of monitored receivers that are offline or whose last poll failed."""
        queryset = self.filter_queryset(ConnectionHealthService.get_unhealthy_connections())
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=None, responses={200: HeartbeatSerializer})
    @action(detail=True, methods=["post"])
    def heartbeat(self, request, pk=None):
        """Judge the link from the poller's records; a link that is not healthy is polled in the next cycle."""
        connection = self.get_object()
        report: HealthReport = ConnectionHealthService.update_heartbeat(connection=connection)
        body = {
            "receiver": report.receiver,
            "healthy": report.healthy,
            "message": report.message,
            "poll_requested": not report.healthy and connection.receiver.active,
        }
        return Response(HeartbeatSerializer(body).data)


class BoardView(ApiMixin, APIView):
    """What the board shows, tile for tile, for other tools (show control, stage displays).

    Its ETag is the board version and group: a client sending it back in If-None-Match gets a
    bodiless 304 (one read of the coordination store, no SQL for the board).
    """

    permission_classes = [RolePermission]

    @extend_schema(
        parameters=[OpenApiParameter("group", OpenApiTypes.STR, description="Group slug; empty for every channel")],
        responses={200: BoardSerializer, 304: OpenApiResponse(description="Not modified (If-None-Match)")},
    )
    def get(self, request):
        group = request.query_params.get("group", "")
        try:
            version = BoardService.version()
        except CoordinationError:
            version = ""
        etag = f'"api-{version}-{group}"' if version else ""
        if etag and etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            response = Response(status=status.HTTP_304_NOT_MODIFIED)
        else:
            board = BoardService.board(group=group)
            if board.version and board.version != version:
                etag = f'"api-{board.version}-{group}"'
            response = Response(BoardSerializer(board).data)
        if etag:
            response["ETag"] = etag
        response["Cache-Control"] = "no-cache, private"
        response["Vary"] = "Authorization, Cookie"
        return response


class SchemaView(ApiMixin, SpectacularAPIView):
    """The OpenAPI 3 schema (viewers and above)."""

    permission_classes = [ViewerPermission]


class DocsView(ApiMixin, SpectacularSwaggerSplitView):
    """Swagger UI from drf-spectacular-sidecar's static files; its init script is a separate request."""

    permission_classes = [ViewerPermission]
    template_name = "api/swagger_ui.html"
    url_name = "api-schema"



class NotFoundView(ApiMixin, APIView):
    """Unknown paths under /api/: a JSON 404 in the API's error shape (after the same auth and throttling)."""

    permission_classes = [RolePermission]
    schema = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        raise NotFound()
