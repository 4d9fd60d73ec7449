"""Filtering of API listings by location, manufacturer and online state (query parameters)."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from rest_framework.filters import BaseFilterBackend

from web.api.exceptions import FieldError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ReceiverFilterBackend(BaseFilterBackend):
    """``?location=<id or name>``, ``?manufacturer=<slug or name>``, ``?online=true|false``.

    A view names the path from its model to the receiver in ``receiver_path`` ("" for receivers,
    "channel__receiver" for packs, "receiver" for links).
    """

    def filter_queryset(self, request, queryset: QuerySet, view) -> QuerySet:
        prefix = getattr(view, "receiver_path", "")
        p = f"{prefix}__" if prefix else ""
        location = request.query_params.get("location", "").strip()
        if location:
            if location.isdigit():
                queryset = queryset.filter(**{f"{p}location_id": int(location)})
            else:
                queryset = queryset.filter(**{f"{p}location__name__iexact": location})
        manufacturer = request.query_params.get("manufacturer", "").strip()
        if manufacturer:
            queryset = queryset.filter(
                Q(**{f"{p}manufacturer__slug": manufacturer}) | Q(**{f"{p}manufacturer__name__iexact": manufacturer})
            )
        online = request.query_params.get("online", "").strip().lower()
        if online:
            if online not in _TRUE | _FALSE:
                raise FieldError("online", "Use true or false.")
            queryset = queryset.filter(**{f"{p}online": online in _TRUE})
        return queryset

    def get_schema_operation_parameters(self, view) -> list[dict]:
        def param(name: str, description: str, schema: dict) -> dict:
            return {"name": name, "required": False, "in": "query", "description": description, "schema": schema}

        return [
            param("location", "Location id or name (ignoring case).", {"type": "string"}),
            param("manufacturer", "Manufacturer slug or name (ignoring case).", {"type": "string"}),
            param("online", "Only receivers that answer (true) or not (false).", {"type": "boolean"}),
        ]
