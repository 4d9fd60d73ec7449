"""Performers and scenes: the channel drawer, bulk paste, scenes and board groups edited by operators.

Thin views: they read, validate what was typed and call the services (AssignmentService,
SceneService, GroupEditService); every page works without JavaScript, HTMX only swaps parts.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from micboard.exceptions import AssignmentConflictError, ConfigurationError, MicboardError
from micboard.models import Channel, Group, GroupSlot, Performer, Scene, SceneAssignment
from micboard.query_optimization import QueryOptimizer
from micboard.services import AssignmentService, GroupEditService, SceneService
from micboard.services.board import runtime_text
from micboard.services.charts import TimelineService
from micboard.services.setup import PERFORMER_NAME_MAX, clean_performer_name
from web.access import operator_required, viewer_required

SEARCH_LIMIT = 50
DATALIST_LIMIT = 500


def _offset(request: HttpRequest) -> int:
    return -1 if request.POST.get("direction") == "up" else 1


# ---- channel detail drawer ----------------------------------------------------------------------


def _channel(pk: int) -> Channel:
    return get_object_or_404(QueryOptimizer.channels_for_board(), pk=pk)


def _drawer_context(request: HttpRequest, channel: Channel, **extra) -> dict:
    tx = getattr(channel, "transmitter", None)
    assignment = getattr(channel, "assignment", None)
    current = assignment.performer.name if assignment else ""
    context = {
        "channel": channel,
        "receiver": channel.receiver,
        "tx": tx,
        "runtime": runtime_text(tx.runtime_minutes, tx.runtime_state) if tx else "",
        "current": current,
        "typed": current,
        "expected": current,
        "performers": Performer.objects.values_list("name", flat=True)[:DATALIST_LIMIT],
        "name_max": PERFORMER_NAME_MAX,
        "groups": channel.board_groups,
        "can_assign": request.user.has_perm("micboard.change_assignment"),
        "refresh_seconds": settings.MICBOARD_REFRESH_INTERVAL,
    }
    context.update(extra)
    return context


def _render_drawer(request: HttpRequest, channel: Channel, *, status: int = 200, **extra) -> HttpResponse:
    context = _drawer_context(request, channel, recent=TimelineService.recent(channel=channel), **extra)
    if request.htmx and not request.htmx.boosted:
        return render(request, "micboard/channel.html#drawer", context)  # 200 so htmx swaps it in
    return render(request, "micboard/channel.html", context, status=status)


@require_GET
@viewer_required
def channel_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A channel's performer, receiver and last readings; the board opens it in a drawer."""
    response = _render_drawer(request, _channel(pk))
    response["Vary"] = "HX-Request"
    return response


@require_GET
@viewer_required
def channel_readings(request: HttpRequest, pk: int) -> HttpResponse:
    """The drawer's readings alone, refreshed while the drawer is open."""
    return render(request, "micboard/channel.html#readings", _drawer_context(request, _channel(pk)))


@require_POST
@operator_required
@permission_required("micboard.change_assignment", raise_exception=True)
def channel_performer(request: HttpRequest, pk: int) -> HttpResponse:
    """Assign, change or remove the channel's performer (checked against what the operator saw)."""
    channel = _channel(pk)
    typed = request.POST.get("name", "")
    expected = request.POST.get("expected", "")
    try:
        if request.POST.get("action") == "remove":
            AssignmentService.unassign(channel=channel, expected=expected)
            notice = "Performer removed."
        else:
            assignment = AssignmentService.reassign(channel=channel, name=typed, expected=expected)
            notice = f"{assignment.performer.name} is on this channel now."
    except (ConfigurationError, AssignmentConflictError) as exc:
        return _render_drawer(request, _channel(pk), status=422, error=str(exc), typed=typed[:PERFORMER_NAME_MAX * 2])
    if request.htmx and not request.htmx.boosted:
        return _render_drawer(request, _channel(pk), notice=notice)
    messages.success(request, notice)
    return redirect("channel-detail", pk=pk)


# ---- scenes --------------------------------------------------------------------------------------


def _scene_rows():
    """Every channel with its current performer, in board order."""
    channels = Channel.objects.select_related("receiver", "assignment__performer")
    return list(channels.order_by("receiver__name", "number"))


@require_GET
@viewer_required
def scene_list(request: HttpRequest) -> HttpResponse:
    """The scenes in order, the active one marked, and who wears what in each (printable)."""
    scenes = list(Scene.objects.all())
    held = SceneAssignment.objects.select_related("performer")
    cells = {(sa.scene_id, sa.channel_id): sa.performer.name for sa in held}
    channels = _scene_rows()
    matrix = [
        {"channel": c, "current": c.assignment.performer.name if hasattr(c, "assignment") else "",
         "cells": [cells.get((s.pk, c.pk), "") for s in scenes]}
        for c in channels
    ]
    for scene in scenes:
        scene.size = sum(1 for (s, _c) in cells if s == scene.pk)
        scene.differs = SceneService.differences(scene=scene) if scene.active else 0
    return render(request, "micboard/scenes.html", {"scenes": scenes, "matrix": matrix})


@require_POST
@operator_required
@permission_required("micboard.add_scene", raise_exception=True)
def scene_create(request: HttpRequest) -> HttpResponse:
    try:
        scene = SceneService.create_scene(name=request.POST.get("name", ""), notes=request.POST.get("notes", ""))
    except ConfigurationError as exc:
        messages.error(request, f"Scene not created: {exc}")
        return redirect("scene-list")
    messages.success(request, f"Scene {scene.name} created from the current assignments.")
    return redirect("scene-edit", pk=scene.pk)


@require_http_methods(["GET", "POST"])
@viewer_required
def scene_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Name, notes and who wears each channel in the scene; saving stores all or nothing."""
    scene = get_object_or_404(Scene, pk=pk)
    channels = _scene_rows()
    held = {sa.channel_id: sa.performer.name for sa in scene.assignments.select_related("performer")}
    errors: dict[int, str] = {}
    form_error = ""
    typed = {c.pk: held.get(c.pk, "") for c in channels}
    name, notes = scene.name, scene.notes
    status = 200
    if request.method == "POST":
        if not request.user.has_perm("micboard.change_scene"):
            return HttpResponse("You may not change scenes.", status=403)
        name, notes = request.POST.get("name", ""), request.POST.get("notes", "")
        typed = {c.pk: request.POST.get(f"performer-{c.pk}", "") for c in channels}
        for channel_id, value in typed.items():
            if value.strip():
                try:
                    clean_performer_name(value)
                except ConfigurationError as exc:
                    errors[channel_id] = str(exc)
        if not errors:
            try:
                SceneService.update_scene(scene=scene, name=name, notes=notes, performers=typed)
            except ConfigurationError as exc:
                form_error = str(exc)
            else:
                messages.success(request, f"Scene {scene.name} saved.")
                return redirect("scene-edit", pk=scene.pk)
        else:
            form_error = "Nothing was saved: fix the names marked below."
        scene.refresh_from_db()
        status = 422
    rows = [{"channel": c, "value": typed.get(c.pk, ""), "error": errors.get(c.pk, ""),
             "current": c.assignment.performer.name if hasattr(c, "assignment") else ""} for c in channels]
    context = {
        "scene": scene, "rows": rows, "name": name, "notes": notes, "form_error": form_error,
        "performers": Performer.objects.values_list("name", flat=True)[:DATALIST_LIMIT],
        "name_max": PERFORMER_NAME_MAX,
    }
    return render(request, "micboard/scene_edit.html", context, status=status)


@require_POST
@operator_required
@permission_required("micboard.change_assignment", raise_exception=True)
def scene_activate(request: HttpRequest, pk: int) -> HttpResponse:
    scene = get_object_or_404(Scene, pk=pk)
    try:
        switch = SceneService.activate(scene=scene)
    except MicboardError as exc:
        messages.error(request, f"Scene not activated: {exc}")
    else:
        messages.success(
            request,
            f"{scene.name} is active: {switch.total} channel(s) changed "
            f"({switch.assigned} assigned, {switch.changed} changed, {switch.removed} cleared).",
        )
    return redirect("scene-list")


@require_POST
@operator_required
@permission_required("micboard.change_scene", raise_exception=True)
def scene_capture(request: HttpRequest, pk: int) -> HttpResponse:
    scene = get_object_or_404(Scene, pk=pk)
    count = SceneService.capture_current(scene=scene)
    messages.success(request, f"{scene.name} now holds the current assignments ({count} channel(s)).")
    return redirect("scene-edit", pk=pk)


@require_POST
@operator_required
@permission_required("micboard.change_scene", raise_exception=True)
def scene_move(request: HttpRequest, pk: int) -> HttpResponse:
    SceneService.move_scene(scene=get_object_or_404(Scene, pk=pk), offset=_offset(request))
    return redirect(f"{reverse('scene-list')}#scene-{pk}")


@require_http_methods(["GET", "POST"])
@operator_required
@permission_required("micboard.delete_scene", raise_exception=True)
def scene_delete(request: HttpRequest, pk: int) -> HttpResponse:
    scene = get_object_or_404(Scene, pk=pk)
    if request.method == "POST":
        SceneService.delete_scene(scene=scene)
        messages.success(request, f"Scene {scene.name} deleted; the board keeps its performers.")
        return redirect("scene-list")
    return render(request, "micboard/confirm_delete.html", {
        "what": "scene", "name": scene.name, "back": reverse("scene-list"),
        "detail": "The performers on the board stay as they are.",
    })


# ---- board groups --------------------------------------------------------------------------------


@require_GET
@viewer_required
def group_list(request: HttpRequest) -> HttpResponse:
    """Every group in tab order, with their tile counts, and a form for a new one."""
    groups = list(Group.objects.order_by("position", "name"))
    counts = {g: 0 for g in (x.pk for x in groups)}
    for group_id in GroupSlot.objects.values_list("group_id", flat=True):
        counts[group_id] = counts.get(group_id, 0) + 1
    for group in groups:
        group.tile_count = counts.get(group.pk, 0)
    return render(request, "micboard/groups.html", {"groups": groups})


@require_POST
@operator_required
@permission_required("micboard.add_group", raise_exception=True)
def group_create(request: HttpRequest) -> HttpResponse:
    try:
        group = GroupEditService.create_group(name=request.POST.get("name", ""))
    except ConfigurationError as exc:
        messages.error(request, f"Group not created: {exc}")
        return redirect("group-list")
    messages.success(request, f"Group {group.name} created: add its channels below.")
    return redirect("group-edit", pk=group.pk)


def _channel_search(q: str, group: Group):
    q = " ".join(q.split())[:100]
    on_group = set(group.slots.exclude(channel=None).values_list("channel_id", flat=True))
    found = list(GroupEditService.search_channels(q=q, limit=SEARCH_LIMIT + 1))
    return [{"channel": c, "on_group": c.pk in on_group,
             "performer": c.assignment.performer.name if hasattr(c, "assignment") else ""}
            for c in found[:SEARCH_LIMIT]], len(found) > SEARCH_LIMIT, q


@require_GET
@viewer_required
def group_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """A group's tiles in order (move, remove, add a channel or a BLANK), its name and the channel search."""
    group = get_object_or_404(Group, pk=pk)
    results, more, q = _channel_search(request.GET.get("q", ""), group)
    context = {
        "group": group,
        "slots": list(group.slots.select_related("channel__receiver", "channel__assignment__performer")),
        "results": results, "more": more, "q": q,
    }
    if request.htmx and request.htmx.target == "channel-results":
        return render(request, "micboard/group_edit.html#results", context)
    return render(request, "micboard/group_edit.html", context)


@require_POST
@operator_required
@permission_required("micboard.change_group", raise_exception=True)
def group_rename(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=pk)
    try:
        GroupEditService.rename_group(group=group, name=request.POST.get("name", ""))
    except ConfigurationError as exc:
        messages.error(request, f"Not renamed: {exc}")
    else:
        messages.success(request, f"Renamed to {group.name}.")
    return redirect("group-edit", pk=pk)


@require_POST
@operator_required
@permission_required("micboard.change_group", raise_exception=True)
def group_move(request: HttpRequest, pk: int) -> HttpResponse:
    GroupEditService.move_group(group=get_object_or_404(Group, pk=pk), offset=_offset(request))
    return redirect(f"{reverse('group-list')}#group-{pk}")


@require_http_methods(["GET", "POST"])
@operator_required
@permission_required("micboard.delete_group", raise_exception=True)
def group_delete(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=pk)
    if request.method == "POST":
        GroupEditService.delete_group(group=group)
        messages.success(request, f"Group {group.name} deleted; its channels and performers stay.")
        return redirect("group-list")
    return render(request, "micboard/confirm_delete.html", {
        "what": "group", "name": group.name, "back": reverse("group-edit", args=[pk]),
        "detail": f"Its {group.slots.count()} tile(s) go with it; the channels and their performers stay.",
    })


@require_POST
@operator_required
@permission_required("micboard.change_group", raise_exception=True)
def group_add_channel(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=pk)
    channel_id = request.POST.get("channel", "")
    channel = Channel.objects.filter(pk=int(channel_id)).first() if channel_id.isdigit() else None
    if channel is None:
        messages.error(request, "Choose a channel to add.")
        return redirect("group-edit", pk=pk)
    try:
        slot = GroupEditService.add_channel(group=group, channel=channel)
    except ConfigurationError as exc:
        messages.error(request, f"Not added: {exc}")
        return redirect("group-edit", pk=pk)
    messages.success(request, f"{channel} added as tile {group.slots.filter(position__lte=slot.position).count()}.")
    return redirect(f"{reverse('group-edit', args=[pk])}#slot-{slot.pk}")


@require_POST
@operator_required
@permission_required("micboard.change_group", raise_exception=True)
def group_add_blank(request: HttpRequest, pk: int) -> HttpResponse:
    slot = GroupEditService.add_blank(group=get_object_or_404(Group, pk=pk))
    return redirect(f"{reverse('group-edit', args=[pk])}#slot-{slot.pk}")


@require_POST
@operator_required
@permission_required("micboard.change_group", raise_exception=True)
def slot_move(request: HttpRequest, pk: int, slot: int) -> HttpResponse:
    tile = get_object_or_404(GroupSlot, pk=slot, group_id=pk)
    GroupEditService.move_slot(slot=tile, offset=_offset(request))
    return redirect(f"{reverse('group-edit', args=[pk])}#slot-{tile.pk}")


@require_POST
@operator_required
@permission_required("micboard.change_group", raise_exception=True)
def slot_remove(request: HttpRequest, pk: int, slot: int) -> HttpResponse:
    tile = get_object_or_404(GroupSlot.objects.select_related("channel__receiver", "group"), pk=slot, group_id=pk)
    GroupEditService.remove_slot(slot=tile)
    what = "BLANK" if tile.channel is None else str(tile.channel)
    messages.success(request, f"Removed {what}; the tiles after it moved up.")
    return redirect("group-edit", pk=pk)


# ---- bulk paste ----------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@operator_required
@permission_required("micboard.change_assignment", raise_exception=True)
def group_paste(request: HttpRequest, pk: int) -> HttpResponse:
    """Paste one name per line onto the group's channels; POST shows the preview, nothing is stored."""
    group = get_object_or_404(Group, pk=pk)
    text = request.POST.get("names", "") if request.method == "POST" else ""
    preview = AssignmentService.preview_paste(group=group, text=text) if request.method == "POST" else None
    return render(request, "micboard/paste.html", {"group": group, "text": text, "preview": preview})


@require_POST
@operator_required
@permission_required("micboard.change_assignment", raise_exception=True)
def group_paste_apply(request: HttpRequest, pk: int) -> HttpResponse:
    """Apply a previewed paste in one transaction, or show the preview again with what went wrong."""
    group = get_object_or_404(Group, pk=pk)
    text = request.POST.get("names", "")
    try:
        count = AssignmentService.apply_paste(group=group, text=text, fingerprint=request.POST.get("fingerprint", ""))
    except (ConfigurationError, AssignmentConflictError) as exc:
        preview = AssignmentService.preview_paste(group=group, text=text)
        return render(
            request, "micboard/paste.html", {"group": group, "text": text, "preview": preview, "error": str(exc)},
            status=409 if isinstance(exc, AssignmentConflictError) else 422,
        )
    extra = len(AssignmentService.preview_paste(group=group, text=text).extra)
    left = f" {extra} line(s) beyond its channels were not applied." if extra else ""
    messages.success(request, f"{count} channel(s) of {group.name} changed.{left}")
    return redirect("group-edit", pk=pk)


