"""Every Redis key name abtest uses and every Lua script that touches them, in one place
(huey's ``RedisStorage`` style).

Nothing else builds a key string or holds a script; ``tests/test_keys.py`` pins each
rendered name and checks that no other module calls Redis from Lua, so this module doubles
as the storage layout's documentation.

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
    <stream>:export-lock               STRING  one exporter per stream at a time (token, TTL)
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


def export_lock(stream: str) -> str:
    """The export lock of ``stream``: the stream's name plus a suffix (same hash tag)."""
    return f"{stream}:export-lock"


def console_secret() -> str:
    """STRING random secret that signs console sessions when no SECRET_KEY is configured."""
    return f"{PREFIX}:console:secret"


def console_session(digest: str) -> str:
    """STRING sha256(console session token) -> sha256(admin API key); expires when idle."""
    return f"{PREFIX}:console:session:{digest}"


# -- Lua scripts ---------------------------------------------------------------------------
# Every script gets its key names through KEYS[] (from the functions above) and touches the
# keys of one hash tag only.  Registered by the modules that run them (`abtest.store`,
# `abtest.auth`, `abtest.export`).

# KEYS: meta, assignments, exposures stream, counts of one experiment.  Checks the caller's
# config version, returns a stored (sticky) variant, or stores the computed one and logs
# the first exposure.  Replies {0, version} stale, {1, ''} nothing to store, {2, variant}
# already stored, {3, variant} stored now.
ASSIGN_SCRIPT: Final = """
local version = redis.call('HGET', KEYS[1], 'version')
if version ~= ARGV[1] then return {0, version or ''} end
if ARGV[2] == 'check' then return {1, ''} end
local stored = redis.call('HGET', KEYS[2], ARGV[3])
if stored then return {2, stored} end
if ARGV[4] == '' then return {1, ''} end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('XADD', KEYS[3], '*', 'unit_id', ARGV[3], 'experiment', ARGV[7],
           'variant', ARGV[4], 'timestamp', ARGV[5], 'config_version', ARGV[1])
redis.call('HINCRBY', KEYS[4], 'v:' .. ARGV[4], 1)
redis.call('HINCRBY', KEYS[4], 'd:' .. ARGV[6] .. ':' .. ARGV[4], 1)
return {3, ARGV[4]}
"""

# KEYS: meta, history of one experiment.  Compare-and-set of a new version plus its audit
# entry; ARGV[1] == '' means "create".
WRITE_VERSION_SCRIPT: Final = """
local current = redis.call('HGET', KEYS[1], 'version')
if ARGV[1] == '' then
  if current then return 0 end
  redis.call('HSET', KEYS[1], 'created_at', ARGV[4])
elseif current ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'config', ARGV[3], 'updated_at', ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[5])
return 1
"""

# KEYS[1] outcome stream, KEYS[2] today's seen-id set, KEYS[3..] earlier days' sets.
RECORD_EVENTS_SCRIPT: Final = """
local accepted, duplicates, batch = 0, 0, {}
for i = 2, #ARGV, 5 do
  local id = ARGV[i]
  local seen = batch[id]
  if not seen then
    for k = 2, #KEYS do
      if redis.call('SISMEMBER', KEYS[k], id) == 1 then seen = true break end
    end
  end
  if seen then
    duplicates = duplicates + 1
  else
    batch[id] = true
    redis.call('SADD', KEYS[2], id)
    redis.call('XADD', KEYS[1], '*', 'event_id', id, 'unit_id', ARGV[i + 1],
               'metric', ARGV[i + 2], 'value', ARGV[i + 3], 'timestamp', ARGV[i + 4])
    accepted = accepted + 1
  end
end
if accepted > 0 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return {accepted, duplicates}
"""

# KEYS: a lock.  Deletes it only while it still holds the caller's token.
RELEASE_LOCK_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: api_keys_by_hash, api_keys_by_id.  With ARGV[3] == '1' it creates the first admin
# key only while no key exists, atomically: two servers starting on one empty store cannot
# both print an admin key.
CREATE_API_KEY_SCRIPT: Final = """
if ARGV[3] == '1' and redis.call('HLEN', KEYS[1]) > 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# Export: KEYS[1] `export_lock`, KEYS[2] the stream.  Every read, renewal and
# acknowledgement is fenced by the lock token; the lock key shares the stream's hash tag
# (it is derived from the stream name), so these run unchanged on Redis Cluster.
EXPORT_READ_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LOCKLOST') end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[5] == '>' then
  local pending = redis.call('XPENDING', KEYS[2], ARGV[3])
  if pending[1] > 0 then return redis.error_reply('PENDING batch not acknowledged') end
  return redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'COUNT', ARGV[6],
                    'STREAMS', KEYS[2], '>')
end
return redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'STREAMS', KEYS[2], '0')
"""
EXPORT_RENEW_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LOCKLOST') end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
EXPORT_ACK_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LOCKLOST') end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local chunk = tonumber(ARGV[4])
local acked = 0
for i = 5, #ARGV, chunk do
  local ids = {}
  for j = i, math.min(i + chunk - 1, #ARGV) do ids[#ids + 1] = ARGV[j] end
  acked = acked + redis.call('XACK', KEYS[2], ARGV[3], unpack(ids))
  redis.call('XDEL', KEYS[2], unpack(ids))
end
return acked
"""
