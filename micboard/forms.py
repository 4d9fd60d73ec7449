"""Forms shared by the admin and the crew's own pages: the filters of an alert target, an e-mail subscription.

The rules themselves live in ``NotifyService`` (``check_quiet_hours``, ``check_address``, ``clean_email``),
which checks them again on every save; these forms only turn its refusals into form errors, so the admin
and ``/alerts/subscription/`` refuse the same things with the same words.
"""

from __future__ import annotations

from django import forms

from micboard.exceptions import ConfigurationError
from micboard.models import EVENT_CHOICES, AlertSubscription, Assignment
from micboard.services.notify import NotifyService


class AlertTargetForm(forms.ModelForm):
    """The filters a webhook and a subscription share: events, priorities, board groups."""

    events = forms.MultipleChoiceField(
        choices=EVENT_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        help_text="Which of an alert's transitions are sent.",
        error_messages={"required": "Tick at least one event."},
    )
    priorities = forms.TypedMultipleChoiceField(
        choices=Assignment.Priority.choices,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only alerts of these priorities; none ticked: every priority.",
    )


class SubscriptionRulesForm(AlertTargetForm):
    """An e-mail subscription's filters and quiet hours, with the service's rules for quiet hours."""

    class Meta:
        model = AlertSubscription
        fields = ["active", "events", "priorities", "groups", "quiet_start", "quiet_end"]

    def clean(self):
        cleaned = super().clean()
        try:
            NotifyService.check_quiet_hours(start=cleaned.get("quiet_start"), end=cleaned.get("quiet_end"))
        except ConfigurationError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return cleaned
