"""Roles and kiosk links in Chromium: a kiosk screen without an account, revocation, each role's controls."""

import os

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from e2e.conftest import CHROMIUM, PASSWORD, allow_console_errors, screenshot
from micboard.models import KioskLink
from micboard.services import KioskService, RoleService
from tests.factories import make_user

WITHIN_MS = 4000  # board data: a few poll intervals


LAN_NAME = "micboard.lan"  # how phones reach the server in these tests (Chromium resolves it to the live server)


@pytest.fixture(scope="module")
def browser():
    """conftest's browser, resolving LAN_NAME to loopback: QR codes made there carry a name a phone could use."""
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                    f"--host-resolver-rules=MAP {LAN_NAME} 127.0.0.1",
                ],
            )
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


def one_refresh_ms() -> float:
    """One grid refresh, plus the reload that shows the refusal and a margin for a loaded machine."""
    return settings.MICBOARD_REFRESH_INTERVAL * 1000 + 2500




def sign_in(page, live_server, username, role):
    make_user(username, role=role, password=PASSWORD)
    page.goto(f"{live_server.url}/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    return page


def test_kiosk_link_shows_the_board_without_login_until_revoked(page, live_server, poller, rig):
    link = KioskService.create(name="FOH tablet")
    allow_console_errors(page, "status of 403", "Error Code 403")  # the refused refresh after the revocation
    page.goto(live_server.url + KioskService.path(link=link))  # a fresh browser context: no account, no cookie
    expect(page.locator("article.tile").first).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    expect(page.locator("#app-kiosk")).to_have_text("Kiosk · FOH tablet")
    expect(page.locator("input[name=password]")).to_have_count(0)
    expect(page.locator("#phone-link")).to_have_count(0)
    screenshot(page, "kiosk-board", full_page=True)

    KioskService.revoke(links=[link])
    refusal = page.locator("#access-refused")
    expect(refusal).to_contain_text("This kiosk link was revoked", timeout=one_refresh_ms())
    expect(page.locator("#board-grid")).to_have_count(0)
    expect(page.get_by_text("Server unreachable")).to_have_count(0)
    screenshot(page, "kiosk-revoked", full_page=True)


def test_scoped_kiosk_shows_only_its_group(page, live_server, poller, rig):
    from micboard.services import GroupService

    lead, romeo = rig["ulxd"].channels.get(number=1), rig["ad"].channels.get(number=1)
    band = GroupService.set_tiles(name="Band", channels=[lead])
    GroupService.set_tiles(name="Cast", channels=[romeo])
    page.goto(live_server.url + KioskService.path(link=KioskService.create(name="Band tablet", group=band)))
    expect(page.locator(f'article.tile[data-channel-id="{lead.pk}"]')).to_be_visible(timeout=WITHIN_MS)
    expect(page.locator(f'article.tile[data-channel-id="{romeo.pk}"]')).to_have_count(0)
    expect(page.locator("#group-tabs a")).to_have_text(["1 Band"])
    assert page.url.endswith("/?group=band")


def test_viewer_sees_no_operator_controls(page, live_server, rig):
    sign_in(page, live_server, "wrangler", "viewer")
    allow_console_errors(page, "status of 403")  # the refusal page of /phone/
    expect(page.locator("#board-grid")).to_be_visible()
    expect(page.locator("#phone-link")).to_have_count(0)
    page.goto(f"{live_server.url}/phone/")
    expect(page.locator("#access-refused")).to_contain_text("Ask your production manager for the operator role")


def test_role_removed_mid_session_shows_the_refusal_on_the_next_refresh(page, live_server, poller, rig):
    sign_in(page, live_server, "wrangler", "viewer")
    expect(page.locator("article.tile").first).to_be_visible(timeout=WITHIN_MS)
    allow_console_errors(page, "status of 403", "Error Code 403")  # the refused refresh, then the refusal page
    RoleService.grant(user=get_user_model().objects.get(username="wrangler"), role=None)
    expect(page.locator("#access-refused")).to_contain_text(
        "Ask your production manager for a role", timeout=one_refresh_ms()
    )
    expect(page.get_by_text("Server unreachable")).to_have_count(0)


def test_operator_makes_a_phone_qr_code_that_opens_the_battery_view(page, live_server, rig, browser, settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, LAN_NAME]
    # Plain HTTP under a LAN name: Chromium ignores Django's Cross-Origin-Opener-Policy header and says so.
    allow_console_errors(page, "Cross-Origin-Opener-Policy header has been ignored")
    server = live_server.url.replace("localhost", LAN_NAME)
    make_user("stage-manager", role="operator", password=PASSWORD)
    page.goto(f"{server}/")
    page.fill("input[name=username]", "stage-manager")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.click("#phone-link")
    page.fill("input[name=name]", "Sam's phone")
    page.select_option("select[name=valid_for]", "12h")
    page.get_by_role("button", name="Create link and show QR code").click()
    qr = page.get_by_role("img", name="QR code of the kiosk link Sam's phone")
    expect(qr).to_be_visible()
    # The SVG from /kiosk/<id>/qr.svg loaded and drew under the page's CSP.
    page.wait_for_function("() => (img => img.complete && img.naturalWidth > 0)(document.querySelector('.qr-image'))")
    expect(page.locator("#loopback-warning")).to_have_count(0)
    link = KioskLink.objects.get(name="Sam's phone")
    url = page.locator("#kiosk-url").inner_text()
    assert url == server + KioskService.path(link=link, destination="battery")
    screenshot(page, "kiosk-qr", readme=True)

    phone = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        tab = phone.new_page()
        tab.goto(url)
        assert tab.url == f"{server}/battery/"  # the phone view (another part of issue 6) from here
    finally:
        phone.close()


def test_phone_page_opened_on_localhost_warns_that_phones_cannot_use_it(page, live_server, rig):
    sign_in(page, live_server, "stage-manager", "operator")
    page.goto(f"{live_server.url}/phone/")
    expect(page.locator("#loopback-warning")).to_contain_text("a phone cannot open a code made here")


def test_admin_shows_the_qr_code_of_a_new_kiosk_link(page, live_server, transactional_db, django_user_model):
    django_user_model.objects.create_superuser("pm", password=PASSWORD)
    page.goto(f"{live_server.url}/admin/micboard/kiosklink/add/")
    page.fill("input[name=username]", "pm")
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.fill("input[name=name]", "Stage door tablet")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("Kiosk link “Stage door tablet” created")
    page.wait_for_function("() => (img => img.complete && img.naturalWidth > 0)(document.getElementById('kiosk-qr'))")
    link = KioskLink.objects.get(name="Stage door tablet")
    expect(page.locator("#kiosk-board-url")).to_have_text(live_server.url + KioskService.path(link=link))
    screenshot(page, "kiosk-admin", full_page=True)
