from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "web"
    verbose_name = "micboard web"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from web.access import end_kiosk_session

        user_logged_in.connect(end_kiosk_session, dispatch_uid="micboard-end-kiosk-on-login")
