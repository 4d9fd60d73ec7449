"""Login throttling in Chromium: the lock-out page says what happened and for how long, under the strict CSP."""

from datetime import timedelta

from playwright.sync_api import expect

from e2e.conftest import PASSWORD, allow_console_errors, screenshot
from tests.factories import make_user


def test_a_locked_out_login_says_so_and_for_how_long(page, live_server, transactional_db, settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    make_user("crew", role="viewer", password=PASSWORD)
    allow_console_errors(page, "status of 429")  # the lock-out page's own status
    page.goto(f"{live_server.url}/accounts/login/")
    for attempt in range(3):
        page.fill("input[name=username]", "crew")
        page.fill("input[name=password]", f"wrong-{attempt}")
        page.click("button[type=submit]")
        page.wait_for_load_state()

    message = page.locator("#locked-out-message")
    expect(message).to_have_text(
        "Login as “crew” is locked from this device after 3 failed attempts. Try again in 15 minutes."
    )
    expect(page.get_by_role("heading", name="Too many failed logins")).to_be_visible()
    screenshot(page, "login-locked-out")
