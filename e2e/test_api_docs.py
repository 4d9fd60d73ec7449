"""The API's docs page in Chromium: Swagger UI from static files, under the strict CSP, no CDN."""

from playwright.sync_api import expect

from e2e.conftest import screenshot


def test_api_docs_render_the_schema_under_the_strict_csp(logged_in, live_server):
    page = logged_in
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(live_server.url) else None)
    with page.expect_response(lambda r: "/api/schema/" in r.url) as schema:
        response = page.goto(f"{live_server.url}/api/docs/")
    assert response.status == 200 and "unsafe-inline" not in response.headers["content-security-policy"]
    assert schema.value.status == 200 and schema.value.headers["x-api-version"] == "1"
    expect(page.locator(".swagger-ui .title")).to_contain_text("micboard API")
    expect(page.get_by_text("/api/receivers/low_battery/", exact=True)).to_be_visible()
    assert [u for u in outside if not u.startswith("data:")] == []  # nothing from a CDN
    screenshot(page, "api-docs", readme=True)
