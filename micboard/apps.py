from django.apps import AppConfig


class MicboardConfig(AppConfig):
    name = "micboard"
    verbose_name = "micboard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from micboard import signals  # noqa: F401
