"""Every Redis key name abtest uses, in one place (huey's ``RedisStorage`` style).

Nothing else builds a key string; ``tests/test_keys.py`` pins each rendered name, so this
module doubles as the storage layout's documentation.

Layout (``K`` is an experiment key, a slug that cannot contain braces)::

    abtest:experiments                 SET     keys of every experiment ever created (the index)
    abtest:{K}:meta                    HASH    version, config (JSON), created_at, updated_at
    abtest:{K}:history                 LIST    one JSON audit entry per version (time, key id, diff)
    abtest:{K}:assignments             HASH    unit_id -> variant key (the sticky assignment)
    abtest:{K}:exposures               STREAM  one entry per first exposure of a unit
    abtest:{K}:counts                  HASH    "v:<variant>" and "d:<YYYY-MM-DD>:<variant>" counts
    abtest:{events}:outcomes           STREAM  every accepted outcome event
    abtest:{events}:seen:<YYYYMMDD>    SET     event ids accepted that UTC day (expire, see events)
    abtest:{apikeys}:by-hash           HASH    sha256(key) -> JSON record (id, role, dates)
    abtest:{apikeys}:by-id             HASH    key id -> sha256(key)
    abtest:lock:lifecycle              STRING  short lock around start/update layer checks
    abtest:console:secret              STRING  the console's session-signing secret (random)

Every key of one experiment carries the hash tag ``{K}``, and each Lua script touches keys of
one tag only (one experiment, ``{events}`` or ``{apikeys}``), so the same scripts run on
Redis Cluster.  The experiment index is written outside the scripts for the same reason.

Contracts relied on by ``abtest export`` and the analysis:

* Exposure stream `exposures_stream` entry fields: ``unit_id``, ``experiment``, ``variant``,
  ``timestamp`` (integer epoch microseconds, UTC), ``config_version`` (integer).  One entry
  per unit and experiment: the unit's first exposure.
* Outcome stream `outcomes_stream` entry fields: ``event_id``, ``unit_id``, ``metric``,
  ``value`` (Python ``repr`` of a finite float), ``timestamp`` (integer epoch microseconds,
  UTC).  Duplicates by ``event_id`` are dropped at ingest within the window documented in
  `abtest.events`.
* `experiments_index` lists every experiment key, so every exposure stream can be drained.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "abtest"


def experiments_index() -> str:
    """SET of every experiment key."""
    return f"{PREFIX}:experiments"


def experiment_meta(experiment_key: str) -> str:
    """HASH with the current config (JSON), its version and timestamps."""
    return f"{PREFIX}:{{{experiment_key}}}:meta"


def experiment_history(experiment_key: str) -> str:
    """LIST of audit entries, oldest first."""
    return f"{PREFIX}:{{{experiment_key}}}:history"


def assignments(experiment_key: str) -> str:
    """HASH unit_id -> sticky variant key."""
    return f"{PREFIX}:{{{experiment_key}}}:assignments"


def exposures_stream(experiment_key: str) -> str:
    """STREAM of first exposures of one experiment."""
    return f"{PREFIX}:{{{experiment_key}}}:exposures"


def exposure_counts(experiment_key: str) -> str:
    """HASH of exposure counters: total per variant and per UTC day and variant."""
    return f"{PREFIX}:{{{experiment_key}}}:counts"


def outcomes_stream() -> str:
    """STREAM of every accepted outcome event."""
    return f"{PREFIX}:{{events}}:outcomes"


def seen_events(day: str) -> str:
    """SET of event ids accepted on one UTC day, ``day`` as ``YYYYMMDD``."""
    return f"{PREFIX}:{{events}}:seen:{day}"


def api_keys_by_hash() -> str:
    """HASH sha256(api key) -> JSON record."""
    return f"{PREFIX}:{{apikeys}}:by-hash"


def api_keys_by_id() -> str:
    """HASH api key id -> sha256(api key)."""
    return f"{PREFIX}:{{apikeys}}:by-id"


def lifecycle_lock() -> str:
    """STRING lock held while a start or update checks layer overlaps across experiments."""
    return f"{PREFIX}:lock:lifecycle"


def console_secret() -> str:
    """STRING random secret that signs console sessions when no SECRET_KEY is configured."""
    return f"{PREFIX}:console:secret"
