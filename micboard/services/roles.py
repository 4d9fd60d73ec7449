"""Roles: viewer, operator and admin, kept as Django groups with the permissions below.

A user's role is the highest role group they belong to (a superuser is always ``admin``). The
groups are managed by micboard: :meth:`RoleService.apply` creates them and sets each one's
permissions to exactly what :data:`ROLE_PERMISSIONS` lists (permissions that do not exist yet are
skipped). It runs in migration ``0003_access``, after every ``migrate`` (post_migrate) and from
``manage.py micboard_roles``; make your own groups for anything extra.

To give a role the permissions of a model added later (scenes, alerts ...), add the model name to
``OPERATOR_MODELS`` (add/change/delete/view) or a codename to ``OPERATOR_PERMISSIONS`` /
``VIEWER_PERMISSIONS``; the next ``migrate`` applies it. A migration that needs the groups right
away calls ``RunPython(micboard.services.roles.apply_roles_migration)``.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.apps import apps as global_apps
from django.db import transaction

from micboard.exceptions import ConfigurationError

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)  # lowest first: each role can do what the ones before it can

APP_LABEL = "micboard"
# Viewer: the board, battery check and sheets, read only (the view_* codenames let later read-only
# surfaces check a permission instead of a role).
VIEWER_MODELS = (
    "receiver", "channel", "transmitter", "performer", "assignment", "group", "groupslot", "scene", "sceneassignment",
)
VIEWER_PERMISSIONS: tuple[str, ...] = ()
# Operator: viewer + who wears what, board groups, scenes, phone kiosk links (acknowledging alerts
# joins here when its model exists).
OPERATOR_MODELS = ("assignment", "performer", "group", "groupslot", "scene", "sceneassignment")
OPERATOR_PERMISSIONS: tuple[str, ...] = ("view_kiosklink", "add_kiosklink")
# Admin: every micboard permission, plus creating and revoking API tokens in the admin
# (rest_framework.authtoken's admin lists tokens through its TokenProxy model), and seeing and lifting
# login lock-outs (django-axes: deleting an access attempt unlocks that user name and address).
ADMIN_OTHER_APPS: dict[str, tuple[str, ...]] = {
    "authtoken": tuple(f"{a}_{m}" for m in ("token", "tokenproxy") for a in ("add", "change", "delete", "view")),
    "axes": ("view_accessattempt", "delete_accessattempt", "view_accesslog"),
}


def role_codenames(role: str, available: Iterable[str]) -> set[str]:
    """The ``micboard`` permission codenames a role holds, among the ``available`` ones.

    Raises:
        ConfigurationError: unknown role.
    """
    available = set(available)
    if role == ADMIN:
        return available
    if role == VIEWER:
        wanted = {f"view_{m}" for m in VIEWER_MODELS} | set(VIEWER_PERMISSIONS)
    elif role == OPERATOR:
        wanted = role_codenames(VIEWER, available) | set(OPERATOR_PERMISSIONS)
        wanted |= {f"{action}_{m}" for m in OPERATOR_MODELS for action in ("add", "change", "delete", "view")}
    else:
        raise ConfigurationError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return wanted & available


class RoleService:
    """Role groups and who holds which role."""

    @staticmethod
    @transaction.atomic
    def apply(*, apps=None) -> dict[str, int]:
        """Create the role groups and set their permissions to the spec (idempotent).

        Args:
            apps: a migration's app registry (historical models); the live one by default.
        Returns:
            The number of permissions each role holds now.
        """
        apps = apps or global_apps
        group_model = apps.get_model("auth", "Group")
        permission_model = apps.get_model("auth", "Permission")
        perms = {p.codename: p for p in permission_model.objects.filter(content_type__app_label=APP_LABEL)}
        held = {}
        for role in ROLES:
            group, _ = group_model.objects.get_or_create(name=role)
            codenames = role_codenames(role, perms)
            granted = [perms[c] for c in sorted(codenames)]
            if role == ADMIN:
                for app_label, others in ADMIN_OTHER_APPS.items():
                    granted += permission_model.objects.filter(content_type__app_label=app_label, codename__in=others)
            group.permissions.set(granted)
            held[role] = len(codenames)
        return held

    @staticmethod
    def role_of(*, user) -> str | None:
        """The highest role of a user: ``admin`` for superusers, None for anonymous users and users with none."""
        if not user or not user.is_authenticated or not user.is_active:
            return None
        if user.is_superuser:
            return ADMIN
        names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        for role in reversed(ROLES):
            if role in names:
                return role
        return None

    @staticmethod
    def at_least(*, role: str | None, minimum: str) -> bool:
        """Whether ``role`` can do what ``minimum`` can."""
        return role in ROLES and ROLES.index(role) >= ROLES.index(minimum)

    @staticmethod
    @transaction.atomic
    def grant(*, user, role: str | None) -> None:
        """Give a user exactly this role (None: no role). ``admin`` also makes them staff, the others do not.

        Raises:
            ConfigurationError: unknown role.
        """
        if role is not None and role not in ROLES:
            raise ConfigurationError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}")
        group_model = global_apps.get_model("auth", "Group")
        RoleService.apply()  # the groups exist before anyone joins them
        user.groups.remove(*group_model.objects.filter(name__in=ROLES))
        if role:
            user.groups.add(group_model.objects.get(name=role))
        staff = role == ADMIN or user.is_superuser
        if user.is_staff != staff:
            user.is_staff = staff
            user.save(update_fields=["is_staff"])


def apply_roles_migration(apps, schema_editor) -> None:
    """RunPython step: create the permissions of the models migrated so far, then apply the roles."""
    from django.contrib.auth.management import create_permissions

    config = apps.get_app_config(APP_LABEL)
    config.models_module = True  # historical app configs have none; create_permissions skips those
    try:
        create_permissions(config, apps=apps, verbosity=0)
    finally:
        config.models_module = None
    RoleService.apply(apps=apps)


def apply_roles_after_migrate(sender, *, apps=None, **kwargs) -> None:
    """post_migrate receiver: keep the role groups in step with the models (new models, flushed test DBs)."""
    RoleService.apply(apps=apps)
