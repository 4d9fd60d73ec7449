from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "micboard tasks"

    def ready(self) -> None:
        from tasks import discovery, history, links, notify  # noqa: F401  (registers the Huey tasks)
