"""Alerts on the screens: the count badge and alert list (board, phone, their own page) and acknowledging.

The list comes from ``LiveAlertService.live`` (cached under the board's version, which every alert change
bumps); a refresh whose ETag (a digest of the alerts listed) still holds is a bodiless 304. The list holds
the acknowledge forms of operators (with their CSRF token), so it is rendered per request, never shared.
Ages count in the browser (``static/js/alerts.js``): a render shows fixed times only.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotModified
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from micboard.exceptions import AlertError, DeviceNotFoundError
from micboard.models import Alert
from micboard.services.alerts import AlertService, LiveAlerts, LiveAlertService
from web.access import access_of, operator_required, viewer_required

# The screens that list alerts: (the page a no-JS acknowledgement returns to, the name recorded with it).
SCREENS = {
    "board": ("board", "board"),
    "phone": ("battery", "phone"),
    "page": ("alerts", "alert list"),
}
LIST_TEMPLATE = "micboard/alerts.html#refresh"

# A user agent's short name: the first platform and browser token found, in this order.
_PLATFORMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "Mac"),
    ("Linux", "Linux"),
)
_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)


def agent_name(user_agent: str) -> str:
    """A user agent as a person names it: "Safari on iPhone", "Firefox", "" when nothing is recognised."""
    browser = next((name for token, name in _BROWSERS if token in user_agent), "")
    platform = next((name for token, name in _PLATFORMS if token in user_agent), "")
    if browser and platform:
        return f"{browser} on {platform}"
    return browser or platform


def screen_name(request: HttpRequest, screen: str) -> str:
    """What an acknowledgement records as its screen: "phone · Safari on iPhone"."""
    agent = agent_name(request.headers.get("User-Agent", "")[:512])
    name = SCREENS[screen][1]
    return f"{name} · {agent}" if agent else name


def _url(name: str, group: str, **query: str) -> str:
    params = {k: v for k, v in (("group", group), *query.items()) if v}
    return reverse(name) + (f"?{urlencode(params)}" if params else "")


def _etag(live: LiveAlerts, *, screen: str, can_ack: bool) -> str:
    return f'"al-{live.digest}-{screen}-{int(can_ack)}"'


def panel_context(request: HttpRequest, *, screen: str, group: str, notice: str = "", live=None) -> dict:
    """What the badge and the list show on ``screen`` for the board of ``group``.

    Raises:
        DeviceNotFoundError: no group has that slug.
    """
    live = live if live is not None else LiveAlertService.live(group=group)
    can_ack = access_of(request).can_operate
    return {
        "live": live,
        "screen": screen,
        "group": group,
        "can_ack": can_ack,
        "notice": notice,
        # After an acknowledgement the next refresh renders again (the notice goes): no ETag to send back.
        "alerts_etag": "" if notice else _etag(live, screen=screen, can_ack=can_ack),
        "alerts_list_url": _url("alerts-list", group, screen=screen),
        "alerts_page_url": _url("alerts", group),
        "alerts_refresh_seconds": settings.MICBOARD_REFRESH_INTERVAL,
    }


def _screen(source) -> str | None:
    screen = source.get("screen", "page")
    return screen if screen in SCREENS else None


def _live(group: str) -> LiveAlerts:
    try:
        return LiveAlertService.live(group=group)
    except DeviceNotFoundError as exc:
        raise Http404(str(exc)) from exc


def _no_cache(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-cache, private"
    response["Vary"] = "Cookie, HX-Request"
    return response


@require_GET
@viewer_required
def alerts(request: HttpRequest) -> HttpResponse:
    """The alert list as a page of its own: the badge's link, complete without JavaScript."""
    group = request.GET.get("group", "")
    context = panel_context(request, screen="page", group=group, live=_live(group))
    context["board_url"] = _url("board", group)
    context["battery_url"] = _url("battery", group)
    return _no_cache(render(request, "micboard/alerts.html", context))


@require_GET
@viewer_required
def alerts_list(request: HttpRequest) -> HttpResponse:
    """The list (and the badge, out of band) for HTMX refreshes; 304 while the same alerts are listed.

    A group deleted meanwhile: on the board and the phone their own refresh takes the screen to All with
    a notice (this answers 204, nothing to swap); the list page goes there itself (``HX-Redirect``).
    """
    screen = _screen(request.GET)
    if screen is None:
        return HttpResponseBadRequest("Unknown screen")
    group = request.GET.get("group", "")
    try:
        live = LiveAlertService.live(group=group)
    except DeviceNotFoundError as exc:
        if not request.htmx:
            raise Http404(str(exc)) from exc
        if screen != "page":
            return HttpResponse(status=204)
        messages.info(request, f"The group “{group[:64]}” no longer exists; showing All.")
        return HttpResponseClientRedirect(reverse("alerts"))
    context = panel_context(request, screen=screen, group=group, live=live)
    etag = context["alerts_etag"]
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(render_to_string(LIST_TEMPLATE, context, request=request))
    response["ETag"] = etag
    return _no_cache(response)


def _what(alert: Alert) -> str:
    """ "Battery low on Lead Vocal": the alert's kind and where, as the list names it."""
    channel = alert.channel
    if channel is None:
        return f"{alert.get_kind_display()} on {alert.receiver.name}"
    assignment = getattr(channel, "assignment", None)
    where = (assignment.performer.name if assignment else "") or channel.name or str(channel)
    return f"{alert.get_kind_display()} on {where}"


def _already(alert: Alert) -> str:
    """Why an acknowledgement changed nothing, in the crew's words."""
    what = _what(alert)
    if alert.state == Alert.State.ACKNOWLEDGED:
        who = alert.acknowledged_by.get_username() if alert.acknowledged_by else "someone"
        where = f" from {alert.acknowledged_from}" if alert.acknowledged_from else ""
        when = timezone.localtime(alert.acknowledged_at).strftime("%H:%M:%S") if alert.acknowledged_at else ""
        return f"{what} was already acknowledged by {who}{where}{f' at {when}' if when else ''}."
    return f"{what} has already cleared: nothing to acknowledge."


@require_POST
@operator_required
def acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    """Acknowledge an alert (operators) from the board, the phone or the list page.

    HTMX gets the screen's list again (with a line saying what happened) and the badge out of band;
    without JavaScript the screen is reloaded with that line as a message. An alert that is already
    acknowledged or resolved says so (not an error page).
    """
    screen = _screen(request.POST)
    if screen is None:
        return HttpResponseBadRequest("Unknown screen")
    group = request.POST.get("group", "")
    alert = Alert.objects.select_related("channel__assignment__performer", "receiver").filter(pk=pk).first()
    if alert is None:
        raise Http404("No alert with that id")
    try:
        AlertService.acknowledge(alert=alert, user=request.user, screen=screen_name(request, screen))
    except AlertError:
        alert.refresh_from_db()
        notice, level = _already(alert), messages.WARNING
    else:
        notice, level = f"Acknowledged: {_what(alert)}.", messages.SUCCESS
    if not request.htmx:
        messages.add_message(request, level, notice)
        return redirect(_url(SCREENS[screen][0], group))
    try:
        live = LiveAlertService.build(group=group)  # this request's own write, not a cache entry of before it
    except DeviceNotFoundError:
        group, live = "", LiveAlertService.build()
    context = panel_context(request, screen=screen, group=group, notice=notice, live=live)
    return _no_cache(HttpResponse(render_to_string(LIST_TEMPLATE, context, request=request)))
