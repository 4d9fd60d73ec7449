"""A viewer sets up their own alert e-mail in Chromium: from the board's menu, a refused value, save, test e-mail."""

from playwright.sync_api import expect

from e2e.conftest import allow_console_errors, screenshot
from micboard.models import AlertSubscription, Delivery, Group


def test_a_viewer_subscribes_from_the_board_and_queues_a_test_email(logged_in, live_server):
    Group.objects.create(name="Band", position=1)
    Group.objects.create(name="Cast", position=2)
    page = logged_in
    allow_console_errors(page, r"status of 422")  # the refused form answers 422 on purpose
    page.reload()
    page.click("text=My alert e-mail")
    expect(page.locator("h1")).to_have_text("My alert e-mail")
    expect(page.locator(".crew-hint").first).to_contain_text("You get no alert e-mail yet")

    page.fill("input[name=email]", "crew@example.org")
    page.check("label:has-text('Critical') input")
    page.check("label:has-text('Band') input")
    page.fill("input[name=quiet_start]", "22:00")  # no end: refused, nothing saved
    page.click("button:has-text('Save')")
    expect(page.locator(".form-error").first).to_contain_text("Quiet hours need both a start and an end")
    assert not AlertSubscription.objects.exists()
    expect(page.locator("label:has-text('Critical') input")).to_be_checked()  # what was typed stays

    page.fill("input[name=quiet_end]", "07:00")
    page.click("button:has-text('Save')")
    expect(page.locator(".crew-message")).to_contain_text("Your alert e-mail to crew@example.org is saved and on.")
    sub = AlertSubscription.objects.get()
    assert sub.priorities == [4] and [g.name for g in sub.groups.all()] == ["Band"]
    screenshot(page, "subscription", full_page=True)

    page.click("button:has-text('Send me a test e-mail')")
    expect(page.locator(".crew-message")).to_contain_text("Test e-mail queued to crew@example.org")
    expect(page.locator("#last-test")).to_contain_text("Last test e-mail: queued at")
    assert Delivery.objects.filter(event="test", user=sub.user).count() == 1
    page.click("button:has-text('Send me a test e-mail')")
    expect(page.locator(".crew-message")).to_contain_text("try again in")
    assert Delivery.objects.filter(event="test").count() == 1
