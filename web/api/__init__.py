"""micboard's JSON API (Django REST framework) under /api/.

Auth, permissions, throttling, pagination, the error shape and the version header are set in
``web.settings`` (REST_FRAMEWORK) and in this package; business logic stays in micboard.services.
"""

API_VERSION = "1"
API_VERSION_HEADER = "X-API-Version"
