"""Who may use the API: the roles of micboard (micboard.services.roles), for session and token users.

Reads need the viewer role or above (staff without a role count as viewers, as on the pages); writes
need operator or above. Kiosk sessions get nothing here: a kiosk link opens screens (possibly scoped
to one group), and the API has no notion of that scope, so a leaked kiosk link must not open it.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from micboard.services.roles import OPERATOR, VIEWER, RoleService
from web.access import NO_ROLE_MESSAGE, NOT_OPERATOR_MESSAGE


def api_role(user) -> str | None:
    """The role of an API user (session or token), with the pages' rule for staff without a role."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    role = RoleService.role_of(user=user)
    if role is None and user.is_staff:
        role = VIEWER
    return role


class RolePermission(BasePermission):
    """Reads for viewers and above, writes for operators and above; signed-in users without a role: 403."""

    message = NO_ROLE_MESSAGE

    def has_permission(self, request, view) -> bool:
        role = api_role(request.user)
        if role is None:
            self.message = NO_ROLE_MESSAGE
            return False
        if request.method in SAFE_METHODS:
            return True
        if not RoleService.at_least(role=role, minimum=OPERATOR):
            self.message = NOT_OPERATOR_MESSAGE
            return False
        return True


class ViewerPermission(BasePermission):
    """Viewer role or above, whatever the method (the schema and the docs page)."""

    message = NO_ROLE_MESSAGE

    def has_permission(self, request, view) -> bool:
        return api_role(request.user) is not None
