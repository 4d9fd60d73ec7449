from django.apps import AppConfig
from django.db.models.signals import post_migrate


class MicboardConfig(AppConfig):
    name = "micboard"
    verbose_name = "micboard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from micboard import signals  # noqa: F401
        from micboard.services.roles import apply_roles_after_migrate

        # After auth created this app's permissions: the role groups follow new models and flushed test databases.
        post_migrate.connect(apply_roles_after_migrate, sender=self, dispatch_uid="micboard-roles")
