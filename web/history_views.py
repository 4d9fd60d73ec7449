"""Show history pages: a channel's timeline (zoomable by time range) and the drawer's last hour.

Thin views over ``micboard.services.charts.TimelineService``. The range comes from preset links or a GET
form (``start`` / ``end`` as local times in TIME_ZONE), so zooming works without JavaScript; a bad range
is answered with the form and a message (400), never a server error.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from micboard.models import Channel
from micboard.query_optimization import QueryOptimizer
from micboard.services.charts import TimelineService
from web.access import viewer_required

PRESETS = (("15m", "15 min", 15), ("1h", "1 h", 60), ("6h", "6 h", 360), ("24h", "24 h", 1440))
DEFAULT_PRESET = "1h"
MIN_SPAN = timedelta(minutes=1)
LOCAL_FORMAT = "%Y-%m-%dT%H:%M:%S"  # what <input type="datetime-local" step="1"> sends and shows


def max_span() -> timedelta:
    """The longest range: the history kept (MICBOARD_HISTORY_RETENTION_DAYS)."""
    return timedelta(days=settings.MICBOARD_HISTORY_RETENTION_DAYS)


class RangeForm(forms.Form):
    """A time range typed in local time; an empty ``end`` is now (a show: "since the doors opened")."""

    start = forms.DateTimeField(label="From", input_formats=[LOCAL_FORMAT, "%Y-%m-%dT%H:%M"])
    end = forms.DateTimeField(label="To", input_formats=[LOCAL_FORMAT, "%Y-%m-%dT%H:%M"], required=False)

    def __init__(self, *args, now: datetime, **kwargs):
        super().__init__(*args, **kwargs)
        self.now = now

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end") or self.now
        if start is None:
            return data
        if start >= self.now:
            raise forms.ValidationError("The start is in the future: pick a time before now.")
        if end <= start:
            raise forms.ValidationError("The end must be after the start.")
        if end - start < MIN_SPAN:
            raise forms.ValidationError("Pick a range of at least a minute.")
        if end - start > max_span():
            days = settings.MICBOARD_HISTORY_RETENTION_DAYS
            raise forms.ValidationError(f"Pick a range of at most {days:g} days (the history kept).")
        data["end"] = end
        return data


def _local(at: datetime) -> str:
    return timezone.localtime(at).strftime(LOCAL_FORMAT)


def _range_url(pk: int, start: datetime, end: datetime, now: datetime) -> str:
    query = {"start": _local(start)}
    if end < now:
        query["end"] = _local(end)
    return f"{reverse('channel-timeline', args=[pk])}?{urlencode(query)}"


def _zoom(pk: int, start: datetime, end: datetime, now: datetime) -> list[dict]:
    """Links that zoom in, out and move the range by half of it (each a plain URL)."""
    span = end - start
    centre = start + span / 2
    links = []
    narrow = max(MIN_SPAN, span / 2)
    links.append(("Zoom in", centre - narrow / 2, centre + narrow / 2))
    wide = min(max_span(), span * 2)
    links.append(("Zoom out", max(centre - wide / 2, now - max_span()), min(centre + wide / 2, now)))
    links.append(("Earlier", start - span / 2, end - span / 2))
    if end < now:
        later_end = min(now, end + span / 2)
        links.append(("Later", later_end - span, later_end))
    return [{"label": label, "url": _range_url(pk, a, b, now)} for label, a, b in links if b > a]


@require_GET
@viewer_required
def channel_timeline(request: HttpRequest, pk: int) -> HttpResponse:
    """Battery, runtime, RF, audio, status and alerts of one channel over a chosen range."""
    channel = get_object_or_404(QueryOptimizer.channels_for_board(), pk=pk)
    now = timezone.now()
    preset = request.GET.get("range", "")
    error = ""
    if "start" in request.GET or "end" in request.GET:
        form = RangeForm(request.GET, now=now)
        if form.is_valid():
            start, end, preset = form.cleaned_data["start"], form.cleaned_data["end"], ""
        else:
            error = " ".join(str(m) for messages in form.errors.values() for m in messages)
    else:
        minutes = {key: m for key, _, m in PRESETS}.get(preset or DEFAULT_PRESET)
        if minutes is None:
            error = f"Unknown range; pick one of {', '.join(label for _, label, _ in PRESETS)} or type one."
            preset = ""
        else:
            preset = preset or DEFAULT_PRESET
            start, end = now - timedelta(minutes=minutes), now
        form = RangeForm(initial={"start": _local(start)} if not error else None, now=now)
    base = reverse("channel-timeline", args=[pk])
    context = {
        "channel": channel,
        "receiver": channel.receiver,
        "performer": channel.assignment.performer.name if hasattr(channel, "assignment") else "",
        "form": form,
        "error": error,
        "presets": [
            {"label": label, "url": f"{base}?{urlencode({'range': key})}", "current": key == preset}
            for key, label, _ in PRESETS
        ],
        "time_zone": settings.TIME_ZONE,
    }
    if error:
        return render(request, "micboard/timeline.html", context, status=400)
    context["timeline"] = TimelineService.build(channel=channel, start=start, end=end, now=now)
    context["zoom"] = _zoom(pk, start, end, now)
    context["live"] = end >= now - timedelta(seconds=1)
    return render(request, "micboard/timeline.html", context)


@require_GET
@viewer_required
def channel_sparklines(request: HttpRequest, pk: int) -> HttpResponse:
    """The drawer's last hour (battery, RF, audio), refreshed while the drawer is open."""
    channel = get_object_or_404(Channel.objects.select_related("receiver"), pk=pk)
    return render(
        request,
        "micboard/channel.html#sparklines",
        {"channel": channel, "recent": TimelineService.recent(channel=channel)},
    )
