"""The monitor's extension points: checks run on every experiment at every check, and hooks
called with every rollout decision that acts.

A module registers itself at import time::

    from service.monitor import checks

    def check_experiment(store, redis, experiment, data, clock) -> None: ...
    checks.register(check_experiment)

    def on_decision(store, redis, experiment, decision, clock) -> None: ...
    checks.register_decision_hook(on_decision)

``experiment`` is the `abtest.experiment.Experiment` checked (its stored version and dates
are ``data.stored``); ``data`` the `service.monitor.data.MonitorData` the check read;
``decision`` the `analysis.decision.rollout.RolloutDecision`, with the experiment as it
was when the check read it (the action's new version is in the audit trail).

The runner imports the modules named in `PLUGINS` that exist (``service.monitor.health``,
the health monitors and alerts) before its first check, so registering needs no change
here; a module that defines ``check_experiment`` / ``on_decision`` but does not register
them is registered by name.  A check that raises is logged and counted, never stops the
other checks or the rollout decisions.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from abtest.experiment import Experiment
    from abtest.redis_client import RedisClient
    from abtest.store import Store
    from analysis.decision.rollout import RolloutDecision
    from service.monitor.clock import Clock
    from service.monitor.data import MonitorData

Check = Callable[["Store", "RedisClient", "Experiment", "MonitorData", "Clock"], None]
DecisionHook = Callable[["Store", "RedisClient", "Experiment", "RolloutDecision", "Clock"], None]

PLUGINS: Final = ("service.monitor.health",)
_log = logging.getLogger(__name__)
_lock = threading.Lock()
_checks: list[Check] = []
_hooks: list[DecisionHook] = []


def register(check: Check) -> Check:
    """Run ``check(store, redis, experiment, data, clock)`` on each experiment at each check
    (once, however often it is registered).  Usable as a decorator."""
    with _lock:
        if check not in _checks:
            _checks.append(check)
    return check


def register_decision_hook(hook: DecisionHook) -> DecisionHook:
    """Call ``hook(store, redis, experiment, decision, clock)`` after each rollout decision
    that acted (advance, ship, roll back).  Usable as a decorator."""
    with _lock:
        if hook not in _hooks:
            _hooks.append(hook)
    return hook


def registered_checks() -> tuple[Check, ...]:
    """The registered checks, in order."""
    return tuple(_checks)


def decision_hooks() -> tuple[DecisionHook, ...]:
    """The registered decision hooks, in order."""
    return tuple(_hooks)


def load_plugins() -> list[str]:
    """Import the `PLUGINS` modules that exist; the names of those loaded."""
    loaded = []
    for name in PLUGINS:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        check: Any = getattr(module, "check_experiment", None)
        if callable(check):
            register(check)
        hook: Any = getattr(module, "on_decision", None)
        if callable(hook):
            register_decision_hook(hook)
        loaded.append(name)
    return loaded


def run_checks(
    store: Store, client: RedisClient, experiment: Experiment, data: MonitorData,
    clock: Clock,
) -> list[str]:  # fmt: skip
    """Run every registered check on one experiment; the errors, one line each."""
    errors = []
    for check in registered_checks():
        try:
            check(store, client, experiment, data, clock)
        except Exception as exc:  # one broken check must not stop the others or the rollout
            _log.exception("monitor check %s failed on %s", getattr(check, "__name__", check),
                           experiment.key)  # fmt: skip
            errors.append(f"{getattr(check, '__name__', check)}: {exc}")
    return errors


def run_decision_hooks(
    store: Store, client: RedisClient, experiment: Experiment,
    decision: RolloutDecision, clock: Clock,
) -> list[str]:  # fmt: skip
    """Call every decision hook; the errors, one line each."""
    errors = []
    for hook in decision_hooks():
        try:
            hook(store, client, experiment, decision, clock)
        except Exception as exc:  # a failed notification must not undo the decision
            _log.exception("monitor decision hook %s failed on %s",
                           getattr(hook, "__name__", hook), experiment.key)  # fmt: skip
            errors.append(f"{getattr(hook, '__name__', hook)}: {exc}")
    return errors


__all__ = [
    "PLUGINS",
    "Check",
    "DecisionHook",
    "decision_hooks",
    "load_plugins",
    "register",
    "register_decision_hook",
    "registered_checks",
    "run_checks",
    "run_decision_hooks",
]
