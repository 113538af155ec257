"""Alerts, webhooks and webhook deliveries as plain records (no I/O).

The monitor (`service.monitor`) raises and resolves alerts and delivers them to webhooks;
the HTTP API serves these records as JSON and `abtest.admin_client.AdminClient` reads them
back, so both sides share one definition here.  Every record is frozen and has
``to_dict``/``from_dict`` with ``from_dict(r.to_dict()) == r``.

An alert is identified for deduplication by ``(experiment, kind, subject)``: while one is
active, the same condition seen again refreshes it (``last_seen``, ``checks``, the latest
``numbers``) instead of raising a second one.  Once resolved it is kept in the experiment's
history; the same condition later is a new alert with a new id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from abtest.errors import InvalidInput


class Severity(StrEnum):
    """How urgent an alert is: ``warning`` (look today) or ``critical`` (act now)."""

    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for warning, 1 for critical: compare severities with it."""
        return _RANK[self]


_RANK: Final = {Severity.WARNING: 0, Severity.CRITICAL: 1}

ACTIVE: Final = "active"
RESOLVED: Final = "resolved"
STATUSES: Final = (ACTIVE, RESOLVED, "all")  # the filters of an alert listing

KIND_PATTERN: Final = r"[a-z][a-z0-9_]{0,63}"  # an alert kind's name
# The URLs the API takes for a webhook: http(s), a host name or address, a port, a
# printable path (stricter than what the monitor's own check lets through).
WEBHOOK_URL_PATTERN: Final = r"https?://[A-Za-z0-9._~%-]+(:[0-9]{1,5})?(/[!-~]*)?"

# What a webhook is told about: a new alert, an active one that became critical, or one
# that cleared.
EVENTS: Final = ("alert.raised", "alert.escalated", "alert.resolved")


def parse_severity(value: object, field_name: str = "severity") -> Severity:
    """``warning`` or ``critical``; else `InvalidInput` naming ``field_name``."""
    try:
        return Severity(str(value))
    except ValueError:
        raise InvalidInput("must be warning or critical", field_name) from None


@dataclass(frozen=True)
class Alert:
    """One alert: a health condition of one experiment, from first seen to resolved.

    ``numbers`` are the latest check's figures (``first_numbers`` those of the first
    one); ``severity`` is the latest, ``peak_severity`` the highest seen.
    """

    id: str
    experiment: str
    kind: str
    subject: str
    severity: Severity
    message: str
    numbers: Mapping[str, Any]
    first_seen: str
    last_seen: str
    status: str = ACTIVE
    resolved_at: str | None = None
    checks: int = 1
    peak_severity: Severity = Severity.WARNING
    first_numbers: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        """``kind|subject``: one active alert per key and experiment."""
        return dedup_key(self.kind, self.subject)

    @property
    def active(self) -> bool:
        """True until resolved."""
        return self.status == ACTIVE

    def to_dict(self) -> dict[str, Any]:
        """JSON form (field order kept for the API)."""
        return {
            "id": self.id,
            "experiment": self.experiment,
            "kind": self.kind,
            "subject": self.subject,
            "severity": self.severity.value,
            "status": self.status,
            "message": self.message,
            "numbers": dict(self.numbers),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "resolved_at": self.resolved_at,
            "checks": self.checks,
            "peak_severity": self.peak_severity.value,
            "first_numbers": dict(self.first_numbers),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """Inverse of `to_dict`."""
        return cls(
            id=str(data["id"]), experiment=str(data["experiment"]), kind=str(data["kind"]),
            subject=str(data["subject"]), severity=Severity(data["severity"]),
            message=str(data["message"]), numbers=dict(data.get("numbers") or {}),
            first_seen=str(data["first_seen"]), last_seen=str(data["last_seen"]),
            status=str(data.get("status", ACTIVE)), resolved_at=data.get("resolved_at"),
            checks=int(data.get("checks", 1)),
            peak_severity=Severity(data.get("peak_severity", data["severity"])),
            first_numbers=dict(data.get("first_numbers") or {}),
        )  # fmt: skip


def dedup_key(kind: str, subject: str) -> str:
    """The identity of a condition within one experiment."""
    return f"{kind}|{subject}"


@dataclass(frozen=True)
class Webhook:
    """A registered receiver and what it wants to hear about (its secret is never shown).

    Empty ``kinds`` or ``experiments`` mean all of them; ``min_severity`` drops alerts
    below it.
    """

    id: str
    url: str
    min_severity: Severity = Severity.WARNING
    kinds: tuple[str, ...] = ()
    experiments: tuple[str, ...] = ()
    description: str = ""
    created_at: str = ""

    def wants(self, alert: Alert) -> bool:
        """Whether ``alert`` passes this webhook's filters."""
        return (
            alert.severity.rank >= self.min_severity.rank
            and (not self.kinds or alert.kind in self.kinds)
            and (not self.experiments or alert.experiment in self.experiments)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form, without the secret."""
        return {
            "id": self.id,
            "url": self.url,
            "min_severity": self.min_severity.value,
            "kinds": list(self.kinds),
            "experiments": list(self.experiments),
            "description": self.description,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Webhook:
        """Inverse of `to_dict` (a ``secret`` field, if present, is ignored)."""
        return cls(
            id=str(data["id"]), url=str(data["url"]),
            min_severity=Severity(data.get("min_severity", Severity.WARNING)),
            kinds=_strings(data.get("kinds")), experiments=_strings(data.get("experiments")),
            description=str(data.get("description", "")),
            created_at=str(data.get("created_at", "")),
        )  # fmt: skip


def _strings(values: Sequence[Any] | None) -> tuple[str, ...]:
    return tuple(str(v) for v in values or ())


PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"


@dataclass(frozen=True)
class Delivery:
    """One notification to one webhook, with the outcome of its attempts.

    ``status`` is ``pending`` (waiting for an attempt or a retry), ``delivered`` (a 2xx
    answer) or ``failed`` (every attempt failed; ``last_error`` says why).
    """

    id: str
    webhook: str
    event: str
    alert: str
    experiment: str
    created_at: str
    status: str = PENDING
    attempts: int = 0
    last_attempt_at: str | None = None
    next_attempt_at: str | None = None
    last_status: int | None = None
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "webhook": self.webhook,
            "event": self.event,
            "alert": self.alert,
            "experiment": self.experiment,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "last_attempt_at": self.last_attempt_at,
            "next_attempt_at": self.next_attempt_at,
            "last_status": self.last_status,
            "last_error": self.last_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Delivery:
        """Inverse of `to_dict`."""
        status = data.get("last_status")
        return cls(
            id=str(data["id"]), webhook=str(data["webhook"]), event=str(data["event"]),
            alert=str(data["alert"]), experiment=str(data["experiment"]),
            created_at=str(data["created_at"]), status=str(data.get("status", PENDING)),
            attempts=int(data.get("attempts", 0)), last_attempt_at=data.get("last_attempt_at"),
            next_attempt_at=data.get("next_attempt_at"),
            last_status=None if status is None else int(status),
            last_error=str(data.get("last_error", "")),
        )  # fmt: skip


__all__ = [
    "ACTIVE",
    "DELIVERED",
    "EVENTS",
    "FAILED",
    "PENDING",
    "RESOLVED",
    "STATUSES",
    "Alert",
    "Delivery",
    "Severity",
    "Webhook",
    "dedup_key",
    "parse_severity",
]
