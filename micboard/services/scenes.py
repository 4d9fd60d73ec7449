"""Scenes: named sets of assignments (act 1, act 2 ...) switched in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from micboard.exceptions import AssignmentConflictError, ConfigurationError
from micboard.models import Assignment, AuditEntry, Channel, Scene, SceneAssignment
from micboard.query_optimization import bulk_create
from micboard.services.board import BoardService
from micboard.services.groups import move_in_order
from micboard.services.names import clean_name
from micboard.services.setup import clean_performer_name, performer_named

SCENE_NAME_MAX = Scene._meta.get_field("name").max_length
SCENE_NOTES_MAX = Scene._meta.get_field("notes").max_length


@dataclass(frozen=True, slots=True)
class SceneSwitch:
    """What activating a scene changed."""

    assigned: int  # channels that got a performer they did not have
    changed: int  # channels whose performer changed
    removed: int  # channels left without a performer

    @property
    def total(self) -> int:
        return self.assigned + self.changed + self.removed


def _clean_scene_name(name: str, *, scene: Scene | None = None) -> str:
    name = clean_name(name, what="A scene", max_length=SCENE_NAME_MAX)
    taken = Scene.objects.filter(name__iexact=name)
    if scene is not None:
        taken = taken.exclude(pk=scene.pk)
    if taken.exists():
        raise ConfigurationError(f"A scene called {name!r} exists already.")
    return name


def _clean_notes(notes: str) -> str:
    notes = " ".join((notes or "").split())
    if len(notes) > SCENE_NOTES_MAX:
        raise ConfigurationError(f"Notes can be at most {SCENE_NOTES_MAX} characters (these have {len(notes)}).")
    return notes


class SceneService:
    """Named sets of assignments; activating one replaces every assignment at once."""

    @staticmethod
    @transaction.atomic
    def create_scene(*, name: str, notes: str = "", from_current: bool = True) -> Scene:
        """A new scene at the end of the list, holding the current assignments when ``from_current``.

        Raises:
            ConfigurationError: the name is empty, too long or taken, or the notes are too long.
        """
        name, notes = _clean_scene_name(name), _clean_notes(notes)
        position = (Scene.objects.aggregate(last=Max("position"))["last"] or 0) + 1
        try:
            with transaction.atomic():
                scene = Scene.objects.create(name=name, notes=notes, position=position)
        except IntegrityError as exc:
            raise ConfigurationError(f"A scene called {name!r} exists already.") from exc
        if from_current:
            bulk_create(
                SceneAssignment,
                (
                    SceneAssignment(scene=scene, channel_id=a.channel_id, performer_id=a.performer_id)
                    for a in Assignment.objects.all()
                ),
            )
        return scene

    @staticmethod
    @transaction.atomic
    def update_scene(
        *, scene: Scene, name: str, notes: str = "", performers: Mapping[int, str] | None = None
    ) -> Scene:
        """Rename a scene and set who wears which channel in it.

        Args:
            performers: channel id -> performer name; "" leaves the channel without a performer in
                the scene. Channels not in the mapping keep what the scene had.
        Raises:
            ConfigurationError: a name is invalid or a channel does not exist (nothing is saved).
        """
        scene.name, scene.notes = _clean_scene_name(name, scene=scene), _clean_notes(notes)
        wanted: dict[int, str] = {}
        for channel_id, typed in (performers or {}).items():
            wanted[int(channel_id)] = clean_performer_name(typed) if (typed or "").strip() else ""
        known = set(Channel.objects.filter(pk__in=wanted).values_list("pk", flat=True))
        if missing := set(wanted) - known:
            raise ConfigurationError(f"No channel with id {', '.join(map(str, sorted(missing)))}.")
        scene.save()
        existing = {sa.channel_id: sa for sa in scene.assignments.select_related("performer")}
        for channel_id, name_ in wanted.items():
            current = existing.get(channel_id)
            if not name_:
                if current is not None:
                    current.delete()
                continue
            performer = performer_named(name_)
            if current is None:
                SceneAssignment.objects.create(scene=scene, channel_id=channel_id, performer=performer)
            elif current.performer_id != performer.pk:
                current.performer = performer
                current.save(update_fields=["performer"])
        return scene

    @staticmethod
    @transaction.atomic
    def capture_current(*, scene: Scene) -> int:
        """Replace what a scene holds with the current assignments. Returns the channels it now holds."""
        scene.assignments.all().delete()
        made = bulk_create(
            SceneAssignment,
            (
                SceneAssignment(scene=scene, channel_id=a.channel_id, performer_id=a.performer_id)
                for a in Assignment.objects.all()
            ),
        )
        return len(made)

    @staticmethod
    def delete_scene(*, scene: Scene) -> None:
        """Delete a scene; the assignments on the board stay as they are."""
        scene.delete()

    @staticmethod
    @transaction.atomic
    def move_scene(*, scene: Scene, offset: int) -> None:
        """Move a scene up (``offset`` < 0) or down in the list; positions become 1..n."""
        move_in_order(Scene.objects.all(), pk=scene.pk, offset=offset)

    @staticmethod
    def differences(*, scene: Scene) -> int:
        """How many channels on the board differ from the scene (0 when the board is the scene)."""
        wanted = dict(scene.assignments.values_list("channel_id", "performer_id"))
        now = dict(Assignment.objects.values_list("channel_id", "performer_id"))
        return sum(1 for c in wanted.keys() | now.keys() if wanted.get(c) != now.get(c))

    @staticmethod
    @transaction.atomic
    def activate(*, scene: Scene) -> SceneSwitch:
        """Make the scene's assignments the board's, all in one transaction, and mark it active.

        Channels the scene leaves empty lose their performer; a channel whose performer changes
        keeps its alert settings, priority and responsible crew member. Every screen sees the whole
        switch with its next refresh (one board version bump, after commit); a failure leaves the
        previous assignments untouched.

        Raises:
            AssignmentConflictError: the scene was deleted meanwhile.
        """
        list(Scene.objects.select_for_update().values_list("pk"))  # one switch at a time
        if not Scene.objects.filter(pk=scene.pk).exists():
            raise AssignmentConflictError(f"The scene {scene.name!r} was deleted meanwhile.")
        wanted = dict(scene.assignments.values_list("channel_id", "performer_id"))
        current = {a.channel_id: a for a in Assignment.objects.select_for_update()}
        removed = [a.pk for c, a in current.items() if c not in wanted]
        changed = [a for c, a in current.items() if c in wanted and a.performer_id != wanted[c]]
        added = [Assignment(channel_id=c, performer_id=p) for c, p in wanted.items() if c not in current]
        Assignment.objects.filter(pk__in=removed).delete()
        for assignment in changed:
            assignment.performer_id = wanted[assignment.channel_id]
        now = timezone.now()
        for assignment in changed:
            assignment.updated_at = now
        Assignment.objects.bulk_update(changed, ["performer", "updated_at"])
        bulk_create(Assignment, added)
        Scene.objects.filter(active=True).exclude(pk=scene.pk).update(active=False)
        Scene.objects.filter(pk=scene.pk).update(active=True, activated_at=now)
        scene.active, scene.activated_at = True, now
        switch = SceneSwitch(assigned=len(added), changed=len(changed), removed=len(removed))
        AuditEntry.objects.create(
            action="activated", model="scene", object_id=str(scene.pk),
            summary=f"{scene.name}: {switch.assigned} assigned, {switch.changed} changed, {switch.removed} cleared"[
                :255
            ],
        )
        BoardService.bump_version_on_commit()
        return switch
