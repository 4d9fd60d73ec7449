"""Discovery: start a scan, follow it live, review what it found (setup: those who may add receivers).

Thin views over DiscoveryService; the scan itself runs in a Huey task (``tasks.discovery``). While a scan
runs, its page refreshes the ``scan`` partial every second (progress, notes, the finds so far); a finished
scan's partial carries no trigger, so the refreshing stops. Every page works without JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from micboard.drivers import DRIVER_LABELS
from micboard.drivers.catalog import device_model
from micboard.exceptions import ConfigurationError, DiscoveryError
from micboard.models import DiscoveredDevice, DiscoveryTask
from micboard.services import DiscoveryService
from micboard.services.discovery import OPTION_KEYS, SYSTEM_API
from tasks.discovery import queue_discovery

ADD = "micboard.add_receiver"
CHANGE = "micboard.change_receiver"
RECENT = 10


def setup_required(view):
    """Signed in (kiosk screens never) with the permission to add receivers."""
    return login_required(permission_required(ADD, raise_exception=True)(view))


class ScanForm(forms.Form):
    scope = forms.CharField(label="Range", max_length=100)  # its input is written out in the template
    families = forms.MultipleChoiceField(
        label="Look for",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Tick at least one protocol to look for."},
    )
    listen = forms.BooleanField(label="Also listen for devices announcing themselves", required=False, initial=True)
    api_key = forms.CharField(
        label="System API key", required=False, max_length=256, widget=forms.PasswordInput(render_value=False)
    )
    tls_fingerprint = forms.CharField(label="System API certificate SHA-256", required=False, max_length=95)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["families"].choices = DiscoveryService.families()
        self.fields["families"].initial = [key for key, _label in DiscoveryService.families()]
        if SYSTEM_API not in dict(DiscoveryService.families()):
            for key in OPTION_KEYS:
                del self.fields[key]

    def clean_scope(self) -> str:
        try:
            return DiscoveryService.normalize_scope(scope=self.cleaned_data["scope"])
        except DiscoveryError as exc:
            raise forms.ValidationError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class Row:
    """One find as the review list shows it."""

    device: DiscoveredDevice
    kind: str  # "Shure command strings (TCP 2202)" ...
    channels: str  # "1 Lead Vox · 2 BVox 1"
    addable: bool  # a model micboard reads


def _rows(task: DiscoveryTask) -> list[Row]:
    rows = []
    for device in DiscoveryService.devices(task=task):
        try:
            device_model(device.model, driver=device.driver)
            addable = True
        except KeyError:
            addable = False
        channels = " · ".join(f"{n} {name}".strip() for n, name in device.channels)
        rows.append(Row(device, DRIVER_LABELS.get(device.driver, device.driver), channels, addable))
    return rows


def _context(task: DiscoveryTask, **extra) -> dict:
    # The bar moves in 5 % steps drawn by CSS (data-step): no inline style, which the CSP refuses.
    context = {"task": task, "rows": _rows(task), "can_change": False, "step": task.percent // 5 * 5}
    context.update(extra)
    return context


@require_GET
@setup_required
def discovery(request: HttpRequest) -> HttpResponse:
    """The scan form and the recent scans."""
    last = DiscoveryTask.objects.order_by("-created_at").first()
    form = ScanForm(initial={"scope": last.scope if last else ""})
    return _page(request, form)


def _page(request: HttpRequest, form: ScanForm, *, status: int = 200) -> HttpResponse:
    context = {
        "form": form,
        "tasks": DiscoveryTask.objects.order_by("-created_at")[:RECENT],
        "interface": settings.MICBOARD_DISCOVERY_INTERFACE,
        "ttl": settings.MICBOARD_DISCOVERY_TTL,
        "listen_seconds": settings.MICBOARD_DISCOVERY_LISTEN_SECONDS,
    }
    return render(request, "micboard/discovery.html", context, status=status)


@require_POST
@setup_required
def discovery_start(request: HttpRequest) -> HttpResponse:
    """Record a scan of the range typed and queue it; then follow it on its page."""
    form = ScanForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=422)
    data = form.cleaned_data
    try:
        task = DiscoveryService.request_discovery(
            scope=data["scope"],
            families=data["families"],
            listen=data["listen"],
            options={k: data.get(k, "") for k in OPTION_KEYS},
            requested_by=request.user,
        )
    except DiscoveryError as exc:
        form.add_error(None, str(exc))
        return _page(request, form, status=422)
    queue_discovery(task)
    return redirect("discovery-task", pk=task.pk)


def _task_response(request: HttpRequest, task: DiscoveryTask, template: str, **extra) -> HttpResponse:
    context = _context(task, can_change=request.user.has_perm(CHANGE), **extra)
    return render(request, template, context)


@require_GET
@setup_required
def discovery_task(request: HttpRequest, pk: int) -> HttpResponse:
    """A scan's progress and its review list."""
    task = get_object_or_404(DiscoveryTask, pk=pk)
    return _task_response(request, task, "micboard/discovery_task.html")


@require_GET
@setup_required
def discovery_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The scan partial alone: what the page refreshes every second while the scan runs."""
    task = get_object_or_404(DiscoveryTask, pk=pk)
    return _task_response(request, task, "micboard/discovery_task.html#scan")


@require_POST
@setup_required
def discovery_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(DiscoveryTask, pk=pk)
    if DiscoveryService.cancel(task=task):
        messages.info(request, "The scan stops after the probes under way.")
    else:
        messages.info(request, "The scan had ended already.")
    if request.htmx:
        task.refresh_from_db()
        return _task_response(request, task, "micboard/discovery_task.html#scan")
    return redirect("discovery-task", pk=pk)


def _review(request: HttpRequest, pk: int, action) -> HttpResponse:
    device = get_object_or_404(DiscoveredDevice.objects.select_related("task"), pk=pk)
    try:
        receiver = action(device)
    except (DiscoveryError, ConfigurationError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"“{receiver.name}” is watched at {receiver.address}: its tiles are on the board.")
    if request.htmx:
        device.task.refresh_from_db()
        return _task_response(request, device.task, "micboard/discovery_task.html#scan")
    return redirect("discovery-task", pk=device.task_id)


@require_POST
@setup_required
def discovery_add(request: HttpRequest, pk: int) -> HttpResponse:
    """Add a new find as a receiver, with its channels."""
    name = request.POST.get("name", "")[:100]
    return _review(request, pk, lambda device: DiscoveryService.add_device(device=device, name=name, user=request.user))


@require_POST
@setup_required
@permission_required(CHANGE, raise_exception=True)
def discovery_update(request: HttpRequest, pk: int) -> HttpResponse:
    """Move a known receiver that was found at another address to that address."""
    return _review(request, pk, lambda device: DiscoveryService.update_address(device=device, user=request.user))
