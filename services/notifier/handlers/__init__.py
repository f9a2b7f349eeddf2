"""What the notifier does on each signal, each due timer and each acknowledgement.

Each handler runs in the caller's transaction: the events it records in the notification
stream and the deliveries it plans commit together, or not at all.

``signals`` answers the signal events, ``timers`` the due escalations, ``acknowledgements``
the people who assess a signal (by link), ``signatures`` those who sign their assessment
in the workspace and ``reviews`` those who review a data-quality issue there;
``deliveries`` plans who is told and how, ``context`` holds what they all are given, and
``ports`` the storage they work on (the ``NotifierUnitOfWork`` port). The rest of the
notifier imports from this package.
"""

from services.notifier.handlers.acknowledgements import (
    Acknowledgement,
    LinkReview,
    NotOnRoster,
    SignalClosed,
    UnknownSignal,
    acknowledge,
    review,
)
from services.notifier.handlers.context import NotifierContext, notification_state
from services.notifier.handlers.deliveries import deliveries_for
from services.notifier.handlers.ports import NotifierUnitOfWork
from services.notifier.handlers.reviews import review_issue
from services.notifier.handlers.signals import (
    handle_signals,
    hold_notifications,
    why_not_acted_on,
)
from services.notifier.handlers.signatures import (
    FactsMissing,
    SignatureReview,
    Signed,
    review_signature,
    sign,
)
from services.notifier.handlers.timers import escalate_due, sample_overdue

__all__ = [
    "Acknowledgement",
    "FactsMissing",
    "LinkReview",
    "NotOnRoster",
    "NotifierContext",
    "NotifierUnitOfWork",
    "SignalClosed",
    "SignatureReview",
    "Signed",
    "UnknownSignal",
    "acknowledge",
    "deliveries_for",
    "escalate_due",
    "handle_signals",
    "hold_notifications",
    "notification_state",
    "review",
    "review_issue",
    "review_signature",
    "sample_overdue",
    "sign",
    "why_not_acted_on",
]
