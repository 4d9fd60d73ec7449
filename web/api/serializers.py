"""JSON shapes of the API. Reads come from querysets the services prepare; writes go through services."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from micboard.models import (
    Assignment,
    Channel,
    Location,
    Manufacturer,
    RealTimeConnection,
    Receiver,
    Transmitter,
)
from micboard.services.board import runtime_text
from micboard.services.setup import PERFORMER_NAME_MAX


class ManufacturerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Manufacturer
        fields = ["id", "name", "slug"]


class LocationRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Location
        fields = ["id", "name"]


class ChannelSummarySerializer(serializers.ModelSerializer):
    performer = serializers.SerializerMethodField()

    class Meta:
        model = Channel
        fields = ["id", "number", "name", "status", "frequency_mhz", "board_position", "performer"]

    @extend_schema_field(serializers.CharField())
    def get_performer(self, channel: Channel) -> str:
        assignment = getattr(channel, "assignment", None)
        return assignment.performer.name if assignment else ""


class ConnectionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = RealTimeConnection
        fields = ["status", "last_success_at", "consecutive_failures", "last_error"]


class ReceiverSerializer(serializers.ModelSerializer):
    manufacturer = ManufacturerSerializer(read_only=True)
    location = LocationRefSerializer(read_only=True, allow_null=True)
    connection = serializers.SerializerMethodField()
    channels = ChannelSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Receiver
        fields = [
            "id",
            "name",
            "manufacturer",
            "model",
            "driver",
            "host",
            "port",
            "remote_id",
            "link",
            "location",
            "active",
            "online",
            "last_seen",
            "firmware",
            "device_id",
            "rf_band",
            "connection",
            "channels",
        ]

    @extend_schema_field(ConnectionSummarySerializer(allow_null=True))
    def get_connection(self, receiver: Receiver):
        connection = getattr(receiver, "connection", None)
        return ConnectionSummarySerializer(connection).data if connection else None


class TransmitterSerializer(serializers.ModelSerializer):
    channel = serializers.IntegerField(source="channel_id", read_only=True)
    channel_number = serializers.IntegerField(source="channel.number", read_only=True)
    receiver = serializers.IntegerField(source="channel.receiver_id", read_only=True)
    receiver_name = serializers.CharField(source="channel.receiver.name", read_only=True)
    performer = serializers.SerializerMethodField()
    runtime_text = serializers.SerializerMethodField()
    status = serializers.CharField(source="channel.status", read_only=True)

    class Meta:
        model = Transmitter
        fields = [
            "id",
            "channel",
            "channel_number",
            "receiver",
            "receiver_name",
            "performer",
            "status",
            "present",
            "model",
            "battery_bars",
            "battery_percent",
            "runtime_minutes",
            "runtime_text",
            "battery_type",
            "rf_dbm",
            "rf_percent",
            "audio_dbfs",
            "audio_percent",
            "antennas",
            "quality",
            "muted",
            "last_seen",
        ]

    @extend_schema_field(serializers.CharField())
    def get_performer(self, tx: Transmitter) -> str:
        assignment = getattr(tx.channel, "assignment", None)
        return assignment.performer.name if assignment else ""

    @extend_schema_field(serializers.CharField())
    def get_runtime_text(self, tx: Transmitter) -> str:
        return runtime_text(tx.runtime_minutes, tx.runtime_state)


class AssignmentSerializer(serializers.ModelSerializer):
    """An assignment; ``performer`` is the performer's name (an existing performer is reused, ignoring case)."""

    channel = serializers.PrimaryKeyRelatedField(queryset=Channel.objects.all())
    performer = serializers.CharField(max_length=PERFORMER_NAME_MAX, source="performer.name")
    receiver_name = serializers.CharField(source="channel.receiver.name", read_only=True)
    channel_number = serializers.IntegerField(source="channel.number", read_only=True)

    class Meta:
        model = Assignment
        fields = [
            "id",
            "channel",
            "receiver_name",
            "channel_number",
            "performer",
            "alerts_enabled",
            "priority",
            "notes",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def validate_performer(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("A performer needs a name.")
        return value.strip()


class LocationSerializer(serializers.ModelSerializer):
    receiver_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Location
        fields = ["id", "name", "description", "receiver_count", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {"name": {"validators": []}}  # uniqueness (ignoring case) is the service's

    def validate_name(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("A location needs a name.")
        return value.strip()


class MoveReceiversSerializer(serializers.Serializer):
    receivers = serializers.ListField(child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=1000)


class ConnectionSerializer(serializers.ModelSerializer):
    receiver = serializers.IntegerField(source="receiver_id", read_only=True)
    receiver_name = serializers.CharField(source="receiver.name", read_only=True)
    receiver_online = serializers.BooleanField(source="receiver.online", read_only=True)

    class Meta:
        model = RealTimeConnection
        fields = [
            "id",
            "receiver",
            "receiver_name",
            "receiver_online",
            "status",
            "last_attempt_at",
            "last_success_at",
            "last_error",
            "last_error_at",
            "consecutive_failures",
            "last_latency_ms",
            "next_attempt_at",
            "total_polls",
            "total_failures",
        ]


class HeartbeatSerializer(serializers.Serializer):
    receiver = serializers.CharField()
    healthy = serializers.BooleanField()
    message = serializers.CharField()
    poll_requested = serializers.BooleanField()


class SyncStatusSerializer(serializers.Serializer):
    receiver = serializers.IntegerField()
    poll_requested = serializers.BooleanField()
    message = serializers.CharField()


class AntennaSerializer(serializers.Serializer):
    letter = serializers.CharField()
    percent = serializers.IntegerField()
    state = serializers.CharField()


class TileSerializer(serializers.Serializer):
    """One tile as the board shows it (micboard.services.board.Tile)."""

    kind = serializers.ChoiceField(choices=["channel", "blank"])
    slot = serializers.IntegerField()
    channel_id = serializers.IntegerField(allow_null=True)
    title = serializers.CharField(allow_blank=True)
    channel_name = serializers.CharField(allow_blank=True)
    performer = serializers.CharField(allow_blank=True)
    receiver_name = serializers.CharField(allow_blank=True)
    receiver_model = serializers.CharField(allow_blank=True)
    channel_number = serializers.IntegerField(allow_null=True)
    status = serializers.CharField(allow_blank=True)
    status_label = serializers.CharField(allow_blank=True)
    is_iem = serializers.BooleanField()
    battery_bars = serializers.IntegerField(allow_null=True)
    battery_percent = serializers.IntegerField(allow_null=True)
    battery_type = serializers.CharField(allow_blank=True)
    runtime_text = serializers.CharField(allow_blank=True)
    runtime_minutes = serializers.IntegerField(allow_null=True)
    rf_percent = serializers.IntegerField(allow_null=True)
    rf_dbm = serializers.FloatField(allow_null=True)
    audio_percent = serializers.IntegerField(allow_null=True)
    antennas = serializers.CharField(allow_blank=True)
    rf_antennas = serializers.ListField(child=serializers.IntegerField())
    antenna_meters = AntennaSerializer(many=True)
    frequency_mhz = serializers.CharField(allow_blank=True)
    tx_offset_db = serializers.IntegerField(allow_null=True)
    quality = serializers.IntegerField(allow_null=True)
    tx_model = serializers.CharField(allow_blank=True)
    muted = serializers.BooleanField()
    prev = serializers.BooleanField()
    hint = serializers.CharField(allow_blank=True)
    offline = serializers.BooleanField()
    battery_stale = serializers.BooleanField()
    last_seen = serializers.CharField(allow_blank=True)
    last_seen_text = serializers.CharField(allow_blank=True)


class GroupTabSerializer(serializers.Serializer):
    name = serializers.CharField()
    slug = serializers.CharField()


class BoardSerializer(serializers.Serializer):
    """The board of one group (or of every channel) as every screen shows it (BoardData)."""

    version = serializers.CharField(allow_blank=True)
    group = serializers.CharField(allow_blank=True)
    groups = GroupTabSerializer(many=True)
    tiles = TileSerializer(many=True)
    updated_at = serializers.CharField()
    degraded = serializers.CharField(allow_blank=True)
