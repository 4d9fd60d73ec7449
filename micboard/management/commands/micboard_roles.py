"""(Re)apply the role groups' permissions; optionally give a user a role.

    manage.py micboard_roles                      # create/refresh viewer, operator, admin (idempotent)
    manage.py micboard_roles --grant operator sam # and give sam exactly that role
    manage.py micboard_roles --grant none sam     # take every role away from sam
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from micboard.exceptions import ConfigurationError
from micboard.services.roles import ROLES, RoleService


class Command(BaseCommand):
    help = "Create the viewer/operator/admin groups and set their permissions; optionally grant a role."

    def add_arguments(self, parser):
        parser.add_argument(
            "--grant", nargs=2, metavar=("ROLE", "USERNAME"),
            help=f"give USERNAME exactly ROLE ({', '.join(ROLES)}, none)",
        )

    def handle(self, *args, grant=None, **options):
        held = RoleService.apply()
        for role, count in held.items():
            self.stdout.write(f"{role}: {count} permissions")
        if grant:
            role, username = grant
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                raise CommandError(f"No user named {username!r}")
            try:
                RoleService.grant(user=user, role=None if role == "none" else role)
            except ConfigurationError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"{username} is now {role if role != 'none' else 'without a role'}")
