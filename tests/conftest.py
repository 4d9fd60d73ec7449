import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Board versions, heartbeats and cached tiles must not leak between tests."""
    cache.clear()
    yield
    cache.clear()
