"""drf-spectacular's AutoSchema, plus the API's one error shape documented on every operation."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="not_found, conflict, invalid, not_authenticated, throttled ...")
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), help_text="Messages per invalid field"
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# Status codes every operation may answer, and those of some operations only.
COMMON_ERRORS = {
    "400": "Invalid input; error.fields names the fields",
    "401": "Not signed in (session) and no valid token",
    "403": "No role, a role that may not do this, or a missing CSRF token",
    "404": "No such object (or page)",
    "429": "Too many requests; wait Retry-After seconds",
}
WRITE_ERRORS = {"409": "Conflict: someone is already on that channel"}
ACTION_ERRORS = {"sync_status": {"503": "Monitoring of the receiver is switched off"}}


class ApiSchema(AutoSchema):
    def _get_response_bodies(self, direction: str = "response") -> dict:
        responses = super()._get_response_bodies(direction)
        errors = dict(COMMON_ERRORS)
        if self.method in ("POST", "PUT", "PATCH"):
            errors |= WRITE_ERRORS
        errors |= ACTION_ERRORS.get(getattr(self.view, "action", None) or "", {})
        for code, description in errors.items():
            if code not in responses:
                response = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                response["description"] = description
                responses[code] = response
        return responses
