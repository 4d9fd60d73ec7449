"""DRF's user and anonymous throttles, reading their rates from settings on every request.

DRF's own classes copy ``DEFAULT_THROTTLE_RATES`` once, when they are imported; these read the
current settings, so a changed rate (``MICBOARD_API_*_RATE``, or a test's override) takes effect.
Counts live in the default cache (Redis, or the file cache shared by every web process).
"""

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class UserThrottle(UserRateThrottle):
    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class AnonThrottle(AnonRateThrottle):
    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
