"""The post-show report (viewers): a show's range, tables per performer and per pack, print CSS and CSV."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from micboard.exceptions import ReportError
from micboard.services.report import ReportService
from web.access import access_of, refuse, viewer_required

FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]
KIOSK_MESSAGE = "The post-show report needs a crew sign-in; a kiosk link shows the board only."


class RangeForm(forms.Form):
    """From / to in the server's time zone (``datetime-local`` inputs)."""

    start = forms.DateTimeField(input_formats=FORMATS, label="From")
    end = forms.DateTimeField(input_formats=FORMATS, label="To")

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start is not None and end is not None:
            try:
                ReportService.check_range(start=start, end=end)
            except ReportError as exc:
                raise forms.ValidationError(str(exc)) from None
        return data


def _default_range() -> tuple[datetime, datetime]:
    """The last 24 hours, to the next whole minute (a show that ended last night, read this morning)."""
    end = timezone.localtime().replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end - timedelta(hours=24), end


def _local(value: datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%dT%H:%M")


def _range_form(request: HttpRequest) -> RangeForm:
    if "start" in request.GET or "end" in request.GET:
        return RangeForm(request.GET)
    start, end = _default_range()
    return RangeForm({"start": _local(start), "end": _local(end)})


@require_GET
@viewer_required
def report(request: HttpRequest) -> HttpResponse:
    """The report of ``?start=&end=`` (default: the last 24 h); a bad range is said, with a 400."""
    if access_of(request).kiosk is not None:
        return refuse(request, KIOSK_MESSAGE, reason="kiosk")
    form = _range_form(request)
    show = None
    if form.is_valid():
        show = ReportService.build(start=form.cleaned_data["start"], end=form.cleaned_data["end"])
    query = {"start": form.data.get("start", ""), "end": form.data.get("end", "")}
    context = {"form": form, "show": show, "csv_query": query}
    return render(request, "micboard/report.html", context, status=200 if show is not None else 400)


@require_GET
@viewer_required
def report_csv(request: HttpRequest) -> HttpResponse:
    """The same report as a CSV download (formula-safe cells)."""
    if access_of(request).kiosk is not None:
        return refuse(request, KIOSK_MESSAGE, reason="kiosk")
    form = _range_form(request)
    if not form.is_valid():
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        return HttpResponse(errors, status=400, content_type="text/plain; charset=utf-8")
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    show = ReportService.build(start=start, end=end)
    response = HttpResponse("\ufeff" + ReportService.csv_text(report=show), content_type="text/csv; charset=utf-8")
    name = f"micboard-report-{timezone.localtime(start):%Y%m%d-%H%M}-{timezone.localtime(end):%Y%m%d-%H%M}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
