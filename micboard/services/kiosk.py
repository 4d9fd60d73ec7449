"""Kiosk links: signed, read-only links that open the board on screens without an account.

The database keeps a random ``token_id`` per link; the URL carries it signed with the SECRET_KEY
(``django.core.signing``, salt ``micboard.kiosk``), so a token_id read from the database or a backup
is not a working link, and any change to the token is refused. Rotating SECRET_KEY invalidates
every kiosk link. A browser that opened a link keeps only the token_id in its session; each request
checks the link again, so a revocation or an expiry takes effect on the next refresh.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

import segno
from django.core import signing
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from micboard.exceptions import ConfigurationError, KioskLinkError
from micboard.models import Group, KioskLink

SALT = "micboard.kiosk"
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per link
# Where a kiosk link may land (the ?next= of /k/<token>/), by the name used in QR codes and forms.
DESTINATIONS = {"board": "/", "battery": "/battery/"}

MESSAGES = {
    "invalid": "This kiosk link is not valid. Ask your production manager for a new one.",
    "unknown": "This kiosk link no longer exists. Ask your production manager for a new one.",
    "revoked": "This kiosk link was revoked. Ask your production manager for a new one.",
    "expired": "This kiosk link has expired. Ask your production manager for a new one.",
}


def _refuse(reason: str) -> KioskLinkError:
    return KioskLinkError(MESSAGES[reason], reason=reason)


class KioskService:
    """Create, sign, check and revoke kiosk links."""

    @staticmethod
    def create(
        *,
        name: str,
        group: Group | None = None,
        expires_at: datetime | None = None,
        valid_for: timedelta | None = None,
        created_by=None,
    ) -> KioskLink:
        """A new link (optionally scoped to a group and expiring).

        Args:
            valid_for: sets ``expires_at`` to now + this; give one of the two at most.
        Raises:
            ConfigurationError: empty or too long name, an expiry in the past, both expiries given.
        """
        name = (name or "").strip()
        if not name:
            raise ConfigurationError("A kiosk link needs a name, e.g. “FOH tablet”.")
        if len(name) > KioskLink._meta.get_field("name").max_length:
            raise ConfigurationError("The name is too long (100 characters at most).")
        if valid_for is not None:
            if expires_at is not None:
                raise ConfigurationError("Give an expiry time or a validity, not both.")
            expires_at = timezone.now() + valid_for
        if expires_at is not None and expires_at <= timezone.now():
            raise ConfigurationError("The expiry must be in the future.")
        return KioskLink.objects.create(
            name=name, group=group, expires_at=expires_at, created_by=created_by, token_id=secrets.token_urlsafe(24)
        )

    @staticmethod
    def token(*, link: KioskLink) -> str:
        """The signed token of a link, as it appears in its URL."""
        return signing.Signer(salt=SALT).sign(link.token_id)

    @staticmethod
    def path(*, link: KioskLink, destination: str = "board") -> str:
        """The link's path (``/k/<token>/``), landing on ``destination`` (a key of DESTINATIONS).

        Raises:
            ConfigurationError: unknown destination.
        """
        if destination not in DESTINATIONS:
            raise ConfigurationError(f"Unknown kiosk destination {destination!r}")
        path = reverse("kiosk-open", kwargs={"token": KioskService.token(link=link)})
        return path if destination == "board" else f"{path}?next={DESTINATIONS[destination]}"  # fixed, URL-safe

    @staticmethod
    def resolve(*, token: str) -> KioskLink:
        """The usable link behind a signed token.

        Raises:
            KioskLinkError: tampered or malformed token (reason "invalid"), deleted link ("unknown"),
                revoked or expired link.
        """
        try:
            token_id = signing.Signer(salt=SALT).unsign(token)
        except signing.BadSignature as exc:
            raise _refuse("invalid") from exc
        return KioskService.check(token_id=token_id)

    @staticmethod
    def check(*, token_id: str) -> KioskLink:
        """The link a kiosk session holds, if it is still usable; notes its use (at most once a minute).

        Raises:
            KioskLinkError: deleted, revoked or expired link.
        """
        link = KioskLink.objects.select_related("group").filter(token_id=token_id).first()
        if link is None:
            raise _refuse("unknown")
        now = timezone.now()
        if link.revoked_at is not None:
            raise _refuse("revoked")
        if link.expires_at is not None and link.expires_at <= now:
            raise _refuse("expired")
        if link.last_used_at is None or now - link.last_used_at >= TOUCH_EVERY:
            KioskLink.objects.filter(pk=link.pk).update(last_used_at=now)
            link.last_used_at = now
        return link

    @staticmethod
    def revoke(*, links: QuerySet[KioskLink] | Iterable[KioskLink]) -> int:
        """Revoke links (screens using them are refused from their next request). Returns how many were active."""
        ids = [link.pk for link in links]
        return KioskLink.objects.filter(pk__in=ids, revoked_at__isnull=True).update(revoked_at=timezone.now())

    @staticmethod
    def state(*, link: KioskLink) -> str:
        """"active", "revoked" or "expired", as the admin lists it."""
        if link.revoked_at is not None:
            return "revoked"
        if link.expires_at is not None and link.expires_at <= timezone.now():
            return "expired"
        return "active"

    @staticmethod
    def usable() -> QuerySet[KioskLink]:
        """Links that still work (neither revoked nor expired), newest first."""
        links = KioskLink.objects.select_related("group").filter(revoked_at__isnull=True)
        return links.exclude(expires_at__lte=timezone.now())

    @staticmethod
    def qr_svg(*, url: str) -> str:
        """A QR code of ``url`` as a standalone SVG document (no XML declaration, no script, no style)."""
        qr = segno.make(url, error="m")
        buffer = io.BytesIO()
        qr.save(buffer, kind="svg", xmldecl=False, scale=8, border=2, dark="#000", light="#fff", title="QR code")
        return buffer.getvalue().decode()
