"""What one webhook delivery is on the wire: its JSON body (a Slack-compatible ``text`` and
the structured alert), the POST that carries it, and the retry policy of failed attempts.
`service.monitor.webhooks` queues and records deliveries; see it for the whole story."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

from abtest.alerts import Alert

_ERROR_CHARS: Final = 300


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a delivery is attempted (see the module docstring)."""

    max_attempts: int = 10
    base_delay: float = 5.0  # seconds before the first retry (about)
    max_delay: float = 900.0
    timeout: float = 5.0  # per attempt
    claim_seconds: float = 30.0  # beyond the timeout, before a claimed delivery is retried

    def delay(self, failed_attempts: int, rng: random.Random) -> float:
        """Seconds to wait after the ``failed_attempts``-th failure (equal jitter)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (failed_attempts - 1))
        return float(ceiling / 2 + rng.uniform(0, ceiling / 2))


def slack_text(event: str, alert: Alert) -> str:
    """The one-line ``text``: severity, experiment, kind, subject and the message."""
    what = {"alert.raised": "", "alert.escalated": "escalated: ",
            "alert.resolved": "resolved: "}.get(event, "")  # fmt: skip
    mark = "RESOLVED" if event == "alert.resolved" else alert.severity.value.upper()
    return f"[{mark}] {alert.experiment}: {what}{alert.kind} ({alert.subject}) - {alert.message}"


def render(event: str, alert: Alert, delivery_id: str) -> str:
    """The delivery's JSON body (the same bytes on every attempt)."""
    return json.dumps({"text": slack_text(event, alert), "event": event,
                       "delivery": delivery_id, "alert": alert.to_dict()},
                      ensure_ascii=False, allow_nan=False)  # fmt: skip


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A POST redirected would be resent as a GET without its body: report the 3xx instead.
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_OPENER: Final = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """One attempt: (HTTP status or None, error text or '')."""
    headers = {"Content-Type": "application/json", **headers}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        text = exc.read(_ERROR_CHARS).decode("utf-8", "replace") if exc.fp else ""
        return exc.code, f"HTTP {exc.code} {exc.reason}: {text}".strip().rstrip(":")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"[:_ERROR_CHARS]


__all__ = ["RetryPolicy", "post", "render", "slack_text"]
