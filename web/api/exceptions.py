"""One JSON error shape for every API error: ``{"error": {"code", "message", "fields"}}``.

Domain exceptions map to HTTP codes here (and only here); DRF's own errors (400, 401, 403, 404,
405, 415, 429) take the same shape through ``api_exception_handler`` (REST_FRAMEWORK's
EXCEPTION_HANDLER).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from micboard.exceptions import (
    AssignmentConflictError,
    ConfigurationError,
    DeviceNotFoundError,
    DeviceOfflineError,
    InvalidReadingError,
    MicboardError,
)

# Domain exception -> (HTTP status, code); the first match in order wins (subclasses first).
DOMAIN_ERRORS: tuple[tuple[type[MicboardError], int, str], ...] = (
    (DeviceNotFoundError, status.HTTP_404_NOT_FOUND, "not_found"),
    (AssignmentConflictError, status.HTTP_409_CONFLICT, "conflict"),
    (InvalidReadingError, status.HTTP_422_UNPROCESSABLE_ENTITY, "invalid_reading"),
    (DeviceOfflineError, status.HTTP_503_SERVICE_UNAVAILABLE, "device_offline"),
    (ConfigurationError, status.HTTP_400_BAD_REQUEST, "invalid"),
)


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    """The one error shape of the API."""
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _flatten(detail) -> str:
    if isinstance(detail, list):
        return " ".join(_flatten(d) for d in detail)
    if isinstance(detail, dict):
        return " ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    return str(detail)


def _fields(detail) -> dict:
    """Field errors as ``{"field": ["message", ...]}`` (nested serializers as ``"a.b"``)."""
    out: dict[str, list[str]] = {}
    if not isinstance(detail, dict):
        return out
    for name, errors in detail.items():
        if isinstance(errors, dict):
            for sub, messages in _fields(errors).items():
                out[f"{name}.{sub}"] = messages
        else:
            out[str(name)] = [str(e) for e in (errors if isinstance(errors, list) else [errors])]
    return out


class FieldError(exceptions.ValidationError):
    """A validation error on one named field (a query parameter or a body field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__({field: [message]})


def api_exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: domain errors to their status, every error to one shape."""
    for cls, code_status, code in DOMAIN_ERRORS:
        if isinstance(exc, cls):
            return Response(error_body(code, str(exc)), status=code_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None  # a server error: Django logs it and answers 500
    if isinstance(exc, exceptions.ValidationError):
        fields = _fields(exc.detail)
        if isinstance(exc.detail, dict):
            message = "Invalid input: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
        else:
            message = _flatten(exc.detail)
        response.data = error_body("invalid", message, fields)
    else:
        detail = getattr(exc, "detail", "")
        code = detail.code if hasattr(detail, "code") else getattr(exc, "default_code", "error")
        response.data = error_body(str(code), _flatten(detail))
    return response
