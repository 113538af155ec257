"""The alert book (`service.monitor.alerts`) on a real redis-server: raise, refresh,
escalate, resolve, deduplicate, keep history, and survive concurrent writers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from abtest import keys
from abtest.alerts import Alert, Severity
from abtest.errors import InvalidInput
from analysis.statistics.health import HealthSignal
from service.monitor.alerts import AlertBook, iso, reconcile

REDIS_TOPOLOGIES = ("single", "cluster")  # the same alerts and deliveries on Redis Cluster
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def signal(kind="exposure_drop", subject="all", severity=Severity.WARNING, observed=3):
    """A health signal with one number."""
    return HealthSignal(kind=kind, severity=severity, subject=subject,
                        numbers={"observed": observed}, message=f"{kind} on {subject}")  # fmt: skip


@pytest.fixture
def book(redis_client):
    """An alert book on the flushed database."""
    return AlertBook(redis_client)


def test_a_new_condition_raises_an_alert(book):
    """The first signal of a condition raises an active alert with its numbers and time."""
    (change,) = book.record("exp", [signal()], judged={"exposure_drop"}, now=T0)
    assert change.event == "alert.raised"
    (alert,) = book.active("exp")
    assert alert == change.alert
    assert (alert.kind, alert.subject, alert.severity) == ("exposure_drop", "all", Severity.WARNING)
    assert alert.first_seen == alert.last_seen == iso(T0) == "2024-05-01T12:00:00.000Z"
    assert alert.numbers == alert.first_numbers == {"observed": 3}
    assert alert.active and alert.resolved_at is None and alert.checks == 1


def test_the_same_condition_refreshes_its_alert(book):
    """Seen again, a condition refreshes the one active alert instead of raising another."""
    book.record("exp", [signal(observed=3)], judged={"exposure_drop"}, now=T0)
    later = T0 + timedelta(hours=1)
    changes = book.record("exp", [signal(observed=1)], judged={"exposure_drop"}, now=later)
    assert changes == []
    (alert,) = book.active("exp")
    assert alert.checks == 2 and alert.last_seen == iso(later) and alert.first_seen == iso(T0)
    assert alert.numbers == {"observed": 1} and alert.first_numbers == {"observed": 3}


def test_a_rise_to_critical_is_an_escalation(book):
    """Warning then critical: one alert, escalated; its peak severity stays critical."""
    book.record("exp", [signal()], judged={"exposure_drop"}, now=T0)
    (change,) = book.record("exp", [signal(severity=Severity.CRITICAL)],
                            judged={"exposure_drop"}, now=T0 + timedelta(hours=1))  # fmt: skip
    assert change.event == "alert.escalated"
    assert change.alert.severity is Severity.CRITICAL
    book.record("exp", [signal()], judged={"exposure_drop"}, now=T0 + timedelta(hours=2))
    (alert,) = book.active("exp")
    assert alert.severity is Severity.WARNING and alert.peak_severity is Severity.CRITICAL


def test_a_cleared_condition_is_resolved_and_kept_in_history(book):
    """A judged kind with no signal resolves its alert, which moves to the history."""
    (raised,) = book.record("exp", [signal()], judged={"exposure_drop"}, now=T0)
    later = T0 + timedelta(days=1)
    (change,) = book.record("exp", [], judged={"exposure_drop"}, now=later)
    assert change.event == "alert.resolved"
    assert book.active("exp") == []
    (past,) = book.history("exp")
    assert past.id == raised.alert.id and past.status == "resolved"
    assert past.resolved_at == iso(later)


def test_kinds_not_judged_are_left_alone(book):
    """A check that did not judge a kind (or another subject) does not resolve its alerts."""
    book.record("exp", [signal(), signal("metric_drop", "purchase[v2]")],
                judged={"exposure_drop", "metric_drop"}, now=T0)  # fmt: skip
    changes = book.record("exp", [signal()], judged={"exposure_drop"}, now=T0)
    assert changes == []
    assert {a.kind for a in book.active("exp")} == {"exposure_drop", "metric_drop"}


def test_a_condition_that_returns_is_a_new_alert(book):
    """After it was resolved, the same condition raises a new alert with a new id."""
    (first,) = book.record("exp", [signal()], judged={"exposure_drop"}, now=T0)
    book.record("exp", [], judged={"exposure_drop"}, now=T0 + timedelta(hours=1))
    (second,) = book.record("exp", [signal()], judged={"exposure_drop"},
                            now=T0 + timedelta(hours=2))  # fmt: skip
    assert second.event == "alert.raised" and second.alert.id != first.alert.id


def test_alerts_are_per_experiment_and_subject(book):
    """Dedup is by (experiment, kind, subject): other subjects and experiments are distinct."""
    book.record("a", [signal(subject="v1"), signal(subject="v2")], judged=(), now=T0)
    book.record("b", [signal(subject="v1")], judged=(), now=T0)
    assert sorted(a.subject for a in book.active("a")) == ["v1", "v2"]
    assert [a.experiment for a in book.active("b")] == ["b"]


def test_history_is_bounded(redis_client):
    """Only the newest `history_limit` resolved alerts are kept."""
    book = AlertBook(redis_client, history_limit=3)
    for i in range(5):
        book.record("exp", [signal(subject=f"v{i}")], judged=(), now=T0)
        book.record("exp", [], judged={"exposure_drop"}, now=T0 + timedelta(minutes=i + 1))
    assert [a.subject for a in book.history("exp")] == ["v4", "v3", "v2"]
    assert redis_client.llen(keys.alerts_history("exp")) == 3


def test_listing_across_experiments_with_filters(book):
    """Active alerts come first (critical, then oldest); resolved ones filter by time."""
    book.record("a", [signal(subject="v1")], judged=(), now=T0)
    book.record("b", [signal(severity=Severity.CRITICAL)], judged=(), now=T0 + timedelta(hours=1))
    book.record("c", [signal()], judged=(), now=T0)
    book.record("c", [], judged={"exposure_drop"}, now=T0 + timedelta(days=2))
    everything = book.alerts(["a", "b", "c"], status="all")
    assert [(a.experiment, a.status) for a in everything] == [
        ("b", "active"), ("a", "active"), ("c", "resolved")]  # fmt: skip
    assert [a.experiment for a in book.alerts(["a", "b", "c"], status="resolved")] == ["c"]
    assert book.alerts(["c"], status="all", since=T0 + timedelta(days=3)) == []
    assert len(book.alerts(["a", "b", "c"], status="all", since=T0 + timedelta(days=1))) == 3
    assert book.counts(["a", "b", "c"]) == {("a", "exposure_drop", "warning"): 1,
                                            ("b", "exposure_drop", "critical"): 1}  # fmt: skip
    with pytest.raises(InvalidInput) as caught:
        book.alerts(["a"], status="open")
    assert caught.value.field == "status"


def test_a_write_between_read_and_apply_makes_the_update_retry(redis_client):
    """A monitor whose read went stale (another resolved the alert meanwhile) does not
    bring the resolved alert back as active: its compare-and-set fails and it re-reads."""
    other = AlertBook(redis_client)
    other.record("exp", [signal()], judged=(), now=T0)

    class Interleaved(AlertBook):
        reads = 0

        def _read(self, experiment):
            found = super()._read(experiment)
            Interleaved.reads += 1
            if Interleaved.reads == 1:  # the other monitor resolves it right after our read
                other.record(experiment, [], judged={"exposure_drop"}, now=T0)
            return found

    (change,) = Interleaved(redis_client).record(
        "exp", [signal()], judged={"exposure_drop"}, now=T0 + timedelta(hours=1)
    )
    assert Interleaved.reads == 2
    assert change.event == "alert.raised"  # a new alert: the old one stays resolved
    (active,) = other.active("exp")
    (resolved,) = other.history("exp")
    assert active.id != resolved.id and active.checks == 1


def test_reconcile_keeps_the_most_severe_of_duplicate_signals():
    """Two signals of one condition in one check make one alert, at the higher severity."""
    after, changes = reconcile(
        "exp", {}, [signal(), signal(severity=Severity.CRITICAL)], judged=(), now="t",
        new_id=lambda: "a1",
    )  # fmt: skip
    assert list(after) == ["exposure_drop|all"]
    assert after["exposure_drop|all"].severity is Severity.CRITICAL
    assert [c.event for c in changes] == ["alert.raised"]


def test_alert_round_trips_through_json():
    """Alert.from_dict(a.to_dict()) == a."""
    alert = Alert(id="a1", experiment="exp", kind="metric_jump", subject="purchase[v2]",
                  severity=Severity.CRITICAL, message="m", numbers={"z": 6.1},
                  first_seen="t0", last_seen="t1", checks=4,
                  peak_severity=Severity.CRITICAL, first_numbers={"z": 5.5})  # fmt: skip
    assert Alert.from_dict(alert.to_dict()) == alert


def test_non_finite_numbers_are_stored_as_null(book):
    """A signal's NaN or infinity becomes null, so the stored alert is valid JSON."""
    nan = HealthSignal(kind="metric_jump", severity=Severity.WARNING, subject="m",
                       numbers={"relative_change": float("inf"), "z": float("nan")},
                       message="from 0")  # fmt: skip
    book.record("exp", [nan], judged=(), now=T0)
    assert book.active("exp")[0].numbers == {"relative_change": None, "z": None}
