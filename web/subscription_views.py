"""A crew member's own alert e-mail: what is sent to them, their address, quiet hours, and a test message.

Every signed-in user with a role (viewer and up) edits their own subscription only: the page has no id in
its URL, it always means ``request.user``. Kiosk screens have no user and are refused. The form shares its
rules with the admin's (``micboard.forms``, ``NotifyService``); writes go through ``NotifyService``, which
checks them again and leaves the audit entry. A test e-mail is only queued here (Huey sends it), at most
one per user per minute.
"""

from __future__ import annotations

from functools import wraps

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from micboard.exceptions import ConfigurationError, RateLimitedError
from micboard.forms import SubscriptionRulesForm
from micboard.models import AlertSubscription, Delivery, Group
from micboard.services.notify import EMAIL_MAX_LENGTH, NotifyService
from web.access import access_of, refuse, viewer_required

KIOSK_MESSAGE = "Alert e-mail belongs to a crew member's own account; a kiosk link has none. Sign in to set it up."


class SubscriptionForm(SubscriptionRulesForm):
    """The subscription's filters and quiet hours (the shared rules), and the user's own address."""

    email = forms.EmailField(label="E-mail address", max_length=EMAIL_MAX_LENGTH)

    class Meta(SubscriptionRulesForm.Meta):
        labels = {"active": "Send me alert e-mail", "groups": "Boards"}
        help_texts = {"groups": "Only alerts of channels on these boards; none ticked: every board."}
        widgets = {
            "groups": forms.CheckboxSelectMultiple,
            "quiet_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "quiet_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["groups"].queryset = Group.objects.order_by("position", "name")
        self.fields["events"].help_text = "Which of an alert's transitions are e-mailed."

    def clean_email(self) -> str:
        try:
            return NotifyService.clean_email(email=self.cleaned_data["email"])
        except ConfigurationError as exc:
            raise forms.ValidationError(str(exc)) from exc


def crew_only(view):
    """Signed-in users with a role (``viewer_required``); kiosk sessions, which have no user, are refused."""

    guarded = viewer_required(view)

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if access_of(request).kiosk is not None:
            return refuse(request, KIOSK_MESSAGE, reason="kiosk")
        return guarded(request, *args, **kwargs)

    return wrapped


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"  # a user's own address and settings
    return response


@require_http_methods(["GET", "POST"])
@crew_only
def subscription(request: HttpRequest) -> HttpResponse:
    """Show and save the signed-in user's alert e-mail; a refused value is said and nothing is saved (422)."""
    user = request.user
    existing = AlertSubscription.objects.filter(user=user).first()
    instance = existing or AlertSubscription(user=user)
    status = 200
    if request.method == "POST":
        form = SubscriptionForm(request.POST, instance=instance)
        if form.is_valid():
            data = form.cleaned_data
            try:
                saved = NotifyService.save_subscription(
                    user=user,
                    email=data["email"],
                    active=data["active"],
                    events=data["events"],
                    priorities=data["priorities"],
                    group_ids=[group.pk for group in data["groups"]],
                    quiet_start=data["quiet_start"],
                    quiet_end=data["quiet_end"],
                )
            except ConfigurationError as exc:
                form.add_error(None, str(exc))
            else:
                state = "on" if saved.active else "off (saved, nothing is sent)"
                messages.success(request, f"Your alert e-mail to {user.email} is saved and {state}.")
                return redirect("alert-subscription")
        status = 422
    else:
        form = SubscriptionForm(instance=instance, initial={"email": user.email})
    last_test = Delivery.objects.filter(user=user, event=Delivery.EVENT_TEST).order_by("-created_at").first()
    context = {"form": form, "subscription": existing, "last_test": last_test, "address": user.email}
    return _no_store(render(request, "micboard/subscription.html", context, status=status))


@require_POST
@crew_only
def subscription_test(request: HttpRequest) -> HttpResponse:
    """Queue a test e-mail to the user's stored address (sent by Huey, never here); one per minute."""
    try:
        NotifyService.queue_test(user=request.user)
    except (RateLimitedError, ConfigurationError) as exc:
        messages.error(request, f"No test e-mail queued: {exc}")
    else:
        messages.success(request, f"Test e-mail queued to {request.user.email}; it leaves within seconds.")
    return redirect("alert-subscription")


@require_POST
@crew_only
def subscription_delete(request: HttpRequest) -> HttpResponse:
    """Remove the user's subscription (no more alert e-mail; the address stays on the account)."""
    if NotifyService.delete_subscription(user=request.user):
        messages.success(request, "Your alert e-mail subscription is removed: no more alert e-mail.")
    else:
        messages.info(request, "You had no alert e-mail subscription.")
    return redirect("alert-subscription")
