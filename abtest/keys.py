"""Every Redis key name abtest uses and every Lua script that touches them, in one place
(huey's ``RedisStorage`` style).

Nothing else builds a key string or holds a script; ``tests/test_keys.py`` pins each
rendered name and checks that no other module calls Redis from Lua, so this module doubles
as the storage layout's documentation.

Layout (``K`` is an experiment key, a slug without braces or colons)::

    abtest:experiments                 SET     keys of every experiment ever created (the index)
    abtest:{K}:meta                    HASH    version, config (JSON), created_at, updated_at,
                                               partitions (absent: 1); unpartitioned, also the
                                               sticky table's lh, ls, ln (see below)
    abtest:{K}:history                 LIST    one JSON audit entry per version (time, key id, diff)
    abtest:{K}:variants                HASH    variant key -> code 0, 1, ... (append-only)
    abtest:<U>:state                   HASH    partitioned only: version (copy), lh, ls, ln
    abtest:<U>:units:<n>               HASH    unit_id -> variant code: bucket n of the sticky map
    abtest:<U>:exposures               STREAM  one entry per first exposure: u, v, t, c[, a]
    abtest:<U>:counts                  HASH    "v:<variant>" and "d:<YYYY-MM-DD>:<variant>" counts
    abtest:<U>:holdout                 STREAM  one entry per unit's first contact under the
                                               holdout: u, h (1 member, 0 not), t, n (its name)
    abtest:<E>:outcomes                STREAM  accepted outcome events
    abtest:<E>:ids:<YYYYMMDD>          HASH    lh, ls, ln of that UTC day's accepted-id table
    abtest:<E>:ids:<YYYYMMDD>:<n>      HASH    12-byte digest of an event id -> '' (bucket n)
    abtest:event-partitions            SET     every event partition count ever written with
    abtest:{K}:rollout                 HASH    guarded rollout: step, step_started_at, step_units,
                                               paused (by, at, reason), lease_epoch
    abtest:{K}:rollout:checks          LIST    the monitor's checks, one JSON each (bounded)
    abtest:{K}:monitor-lease           STRING  "<token>:<epoch>" of the monitor acting on K (TTL)
    abtest:monitor:instances           HASH    monitor id -> JSON heartbeat (last check, error)
    abtest:clock                       STRING  controlled clock (demo/test mode only): epoch µs
    abtest:{holdout}:meta              HASH    the global holdout: version, config (JSON),
                                               created_at, updated_at
    abtest:{holdout}:history           LIST    one JSON audit entry per holdout version
    abtest:<E>:unknown-metrics         HASH    metric name -> events accepted for it while no
                                               catalogue entry or experiment knew it
    abtest:{catalogue}:metrics         HASH    metric name -> its current catalogue entry (JSON)
    abtest:{catalogue}:versions:<M>    LIST    every version of catalogue metric M with its
                                               audit entry (time, key id, reason, diff)
    abtest:{apikeys}:by-hash           HASH    sha256(key) -> JSON record (id, role, dates)
    abtest:{apikeys}:by-id             HASH    key id -> sha256(key)
    abtest:lock:lifecycle              STRING  short lock around start/update layer checks
    <stream>:export-lock               STRING  one exporter per stream at a time (token, TTL)
    abtest:console:secret              STRING  the console's session-signing secret (random)
    abtest:{K}:alerts                  HASH    "kind|subject" -> JSON of the active alert
    abtest:{K}:alerts:rev              STRING  revision of the active alerts (compare-and-set)
    abtest:{K}:alerts:history          LIST    resolved alerts (JSON), newest first, bounded
    abtest:{webhooks}:hooks            HASH    webhook id -> JSON registration (with its secret)
    abtest:{webhooks}:outbox           ZSET    delivery id -> due time (epoch ms)
    abtest:{webhooks}:pending          HASH    delivery id -> JSON (record, body) until it ends
    abtest:{webhooks}:log:<id>         LIST    one webhook's ended deliveries, newest first

**Hash tags and partitions.**  Every Lua script touches keys of one hash tag only, so each
runs on one Redis Cluster shard.  The tags:

* ``{K}``: an experiment's definition (meta, history, variant codes), and its alerts: few
  per experiment (one active per condition, a capped history) and not growing with
  traffic, so they spread over the slots with the experiments and need no partitions.
* ``<U>``, per-unit state of partition ``p`` of ``P`` (``P`` is fixed when the experiment is
  created, the ``partitions`` field of its meta): ``{K}`` when ``P == 1``, else
  ``{K:p<p>}`` or ``{K:p<p>.<j>}`` (`_tag`: the suffix spreads the partitions evenly over
  the slot space, hence over the masters).  A unit's partition is `unit_partition` (a
  hash of its id), so one experiment with 100M units spreads over ``P`` slots.  Each
  assign script checks the config version atomically with its write: against meta's
  ``version`` when ``P == 1``, against the partition's ``state`` copy otherwise.  A config
  write copies the new version into every partition (`RAISE_VERSION_SCRIPT`, one atomic
  call each, only ever upwards) before it returns, and any worker that finds a partition
  behind the version it loaded raises it too, so a partition is never left behind for
  long.
* ``<E>``, events partition ``q`` of ``Q`` (the service's ``EVENT_PARTITIONS``): ``{events}``
  when ``Q == 1``, else ``{events:<q>}`` or ``{events:<q>.<j>}``, chosen the same way.  An
  event's partition is `event_partition` (a hash of its event id), so a retried event
  meets its first copy's dedupe table.
* ``{webhooks}``: webhook registrations and deliveries, bounded too (the deliveries not
  yet ended, and a capped log per webhook).
* ``{holdout}``: the global holdout's definition (each covered experiment carries a
  snapshot of it in its own config, so no assign script reads this tag).
* ``{catalogue}``: the metric catalogue (definitions, a few hundred at most, written
  rarely; the unknown-metric counters grow with traffic and live under ``<E>`` instead,
  the partition chosen by a hash of the metric name).
* ``{apikeys}``: the API keys.  Unhashed keys (the index, the locks, the console's) are only
  ever used alone.

A rule for every future key: an experiment's definition-level data under ``{K}``; anything
that grows with units (sticky state, exposures, per-unit attributes, holdout exposures) under
the unit's partition tag ``<U>``, checked against the partition's version copy; anything that
grows with traffic across experiments (events) under a partition tag like ``<E>``
chosen by a hash of its own id; one script = one tag.

**Compact per-unit state.**  The sticky map and the accepted-id tables are *linear hash
tables* (Litwin 1980) of small Redis hashes: about `LINEAR_HASH_LOAD` entries per bucket,
below the 128 entries up to which Redis keeps a hash as a listpack (``ziplist`` in 6.2;
``hash-max-ziplist-entries``), which costs a few bytes of overhead per entry instead of
about 70.  ``lh`` (level), ``ls`` (split pointer) and ``ln`` (entries) locate a bucket in one
step: ``n = h mod 2**lh``, and ``h mod 2**(lh+1)`` when that is below ``ls``; each insert
past the load splits bucket ``ls``.  ``h`` is `unit_bucket_hash` for units and
`digest_bucket_hash` for event-id digests.  Bucket names are derived inside the scripts
from a declared key with the same hash tag, so they stay in the script's slot.  Units whose
id is longer than 64 bytes make their bucket a plain hash (``hash-max-ziplist-value``).

**Stored values.**  A sticky entry holds the variant's *code* (its index in the
experiment's append-only ``variants`` table), never its key, or a holdout contact code
(``h``: a holdout member, served control; ``s``: a unit first met after the ship, under a
holdout); an exposure entry holds ``u`` unit_id, ``v`` variant code, ``t`` timestamp
(integer epoch microseconds, UTC), ``c`` config_version and, when the unit came with
attributes, ``a`` (the attributes kept for segments, compact JSON of short strings:
`abtest.attributes`); its experiment is its stream's.  Export decodes codes with the
``variants`` table.

Contracts relied on by ``abtest export`` and the analysis:

* Exposure streams: one entry per unit and experiment, the unit's first exposure; fields
  as above (entries written before the compact layout have ``unit_id``, ``experiment``,
  ``variant``, ``timestamp``, ``config_version``, and export reads both).  The timestamp
  is when the unit was assigned: arrival, or the caller's own earlier time within bounds
  (`abtest.assign_calls.exposure_time`).
* Outcome streams: ``event_id``, ``unit_id``, ``metric``, ``value`` (a finite number: the
  digits of an integral value, else its Python ``repr``), ``timestamp`` (integer epoch
  microseconds, UTC).  Duplicates by
  ``event_id`` are dropped at ingest within the window documented in `abtest.events`.
* `experiments_index` lists every experiment key and `event_partition_counts` every events
  partitioning used, so every stream can be drained.

**Stores written before this layout** (one Redis, ``P == Q == 1``) keep working without a
migration step: streams, counters, meta and history keep their names; an experiment's old
sticky hash ``abtest:{K}:assignments`` (unit_id -> variant key, `legacy_assignments`) is
read by the assign script when a unit is not in the new table, and moved into it on that
unit's next request; event ids in the old per-day sets ``abtest:{events}:seen:<YYYYMMDD>``
(`legacy_seen_events`) still count as seen until those sets expire (at most 8 days).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from typing import Final

from redis.crc import key_slot

PREFIX: Final = "abtest"
LINEAR_HASH_LOAD: Final = 48  # mean entries per bucket before a split; Redis keeps 128 packed
EVENT_DIGEST_BYTES: Final = 12  # 96 bits: a false duplicate among 1e10 ids has p < 1e-9


@functools.lru_cache(maxsize=4096)
def _tag(name: str, partition: int, partitions: int) -> str:
    """The hash tag of one partition: ``{name}`` unpartitioned, else ``{name:p<n>}`` (events:
    ``{events:<n>}``), with ``.<j>`` appended for the first ``j`` that puts the tag's slot in
    the partition's share of the 16,384 slots (``[n*16384/P, (n+1)*16384/P)``).  Clusters
    give each master a contiguous slot range, so partitions spread evenly over masters."""
    if partitions < 1 or not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} of {partitions}")
    if partitions == 1:
        return f"{{{name}}}"
    base = f"{name}:{'' if name == 'events' else 'p'}{partition}"
    low, high = partition * _SLOTS // partitions, (partition + 1) * _SLOTS // partitions
    for j in itertools.count():
        tag = base if j == 0 else f"{base}.{j}"
        if low <= key_slot(tag.encode("utf-8")) < high:
            return f"{{{tag}}}"
    raise AssertionError("unreachable")  # pragma: no cover - itertools.count is endless


_SLOTS: Final = 16_384


def experiments_index() -> str:
    """SET of every experiment key."""
    return f"{PREFIX}:experiments"


def experiment_meta(experiment_key: str) -> str:
    """HASH with the current config (JSON), its version, timestamps and partition count."""
    return f"{PREFIX}:{{{experiment_key}}}:meta"


def experiment_history(experiment_key: str) -> str:
    """LIST of audit entries, oldest first."""
    return f"{PREFIX}:{{{experiment_key}}}:history"


def variant_codes(experiment_key: str) -> str:
    """HASH variant key -> its code (what sticky entries and exposures store)."""
    return f"{PREFIX}:{{{experiment_key}}}:variants"


def unit_state(experiment_key: str, partition: int = 0, partitions: int = 1) -> str:
    """HASH holding the version checked by assign and the sticky table's position.

    The experiment's meta when it has one partition, else the partition's own copy.
    """
    if partitions == 1:
        return experiment_meta(experiment_key)
    return f"{PREFIX}:{_tag(experiment_key, partition, partitions)}:state"


def sticky_buckets(experiment_key: str, partition: int = 0, partitions: int = 1) -> str:
    """Name prefix of the sticky map's buckets: bucket ``n`` is ``<prefix>:<n>``."""
    return f"{PREFIX}:{_tag(experiment_key, partition, partitions)}:units"


def exposures_stream(experiment_key: str, partition: int = 0, partitions: int = 1) -> str:
    """STREAM of first exposures of one experiment (one partition of it)."""
    return f"{PREFIX}:{_tag(experiment_key, partition, partitions)}:exposures"


def exposure_counts(experiment_key: str, partition: int = 0, partitions: int = 1) -> str:
    """HASH of exposure counters: total per variant and per UTC day and variant."""
    return f"{PREFIX}:{_tag(experiment_key, partition, partitions)}:counts"


def holdout_stream(experiment_key: str, partition: int = 0, partitions: int = 1) -> str:
    """STREAM of one experiment's holdout entries (one partition of them): the first contact
    of each unit with the experiment while a holdout covers it (`abtest.holdout`)."""
    return f"{PREFIX}:{_tag(experiment_key, partition, partitions)}:holdout"


def holdout_meta() -> str:
    """HASH of the global holdout: version, config (JSON), created_at, updated_at."""
    return f"{PREFIX}:{{holdout}}:meta"


def holdout_history() -> str:
    """LIST of the global holdout's audit entries, oldest first."""
    return f"{PREFIX}:{{holdout}}:history"


def legacy_assignments(experiment_key: str) -> str:
    """HASH unit_id -> variant key: the sticky map of stores written before the compact layout."""
    return f"{PREFIX}:{{{experiment_key}}}:assignments"


def outcomes_stream(partition: int = 0, partitions: int = 1) -> str:
    """STREAM of accepted outcome events (one partition of them)."""
    return f"{PREFIX}:{_tag('events', partition, partitions)}:outcomes"


def seen_events(day: str, partition: int = 0, partitions: int = 1) -> str:
    """HASH (table position) of event ids accepted on one UTC day, ``day`` as ``YYYYMMDD``;
    its buckets are ``<name>:<n>``."""
    return f"{PREFIX}:{_tag('events', partition, partitions)}:ids:{day}"


def legacy_seen_events(day: str) -> str:
    """SET of event ids accepted on one UTC day, as stores before the compact layout kept them."""
    return f"{PREFIX}:{{events}}:seen:{day}"


def event_partition_counts() -> str:
    """SET of every events partition count the store was written with (export drains all)."""
    return f"{PREFIX}:event-partitions"


def unknown_metrics(partition: int = 0, partitions: int = 1) -> str:
    """HASH metric name -> accepted events whose metric nothing knew (one events partition)."""
    return f"{PREFIX}:{_tag('events', partition, partitions)}:unknown-metrics"


def metric_catalogue() -> str:
    """HASH metric name -> the JSON of its current catalogue entry."""
    return f"{PREFIX}:{{catalogue}}:metrics"


def metric_versions(name: str) -> str:
    """LIST of every version of one catalogue metric (oldest first), each with its audit."""
    return f"{PREFIX}:{{catalogue}}:versions:{name}"


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


def rollout_state(experiment_key: str) -> str:
    """HASH of a guarded rollout's state (its plan is in the config)."""
    return f"{PREFIX}:{{{experiment_key}}}:rollout"


def rollout_checks(experiment_key: str) -> str:
    """LIST of the monitor's check records of one rollout, oldest first, bounded."""
    return f"{PREFIX}:{{{experiment_key}}}:rollout:checks"


def monitor_lease(experiment_key: str) -> str:
    """STRING lease of the monitor that may act on one experiment (see `LEASE_SCRIPT`)."""
    return f"{PREFIX}:{{{experiment_key}}}:monitor-lease"


def monitor_instances() -> str:
    """HASH monitor id -> JSON heartbeat of each monitor process."""
    return f"{PREFIX}:monitor:instances"


def controlled_clock() -> str:
    """STRING the controlled clock's time in epoch µs (``ABTEST_CLOCK=controlled`` only)."""
    return f"{PREFIX}:clock"


def console_secret() -> str:
    """STRING random secret that signs console sessions when no SECRET_KEY is configured."""
    return f"{PREFIX}:console:secret"


def console_session(digest: str) -> str:
    """STRING sha256(console session token) -> sha256(admin API key); expires when idle."""
    return f"{PREFIX}:console:session:{digest}"


def alerts(experiment_key: str) -> str:
    """HASH ``kind|subject`` -> JSON of the experiment's active alert for that condition."""
    return f"{PREFIX}:{{{experiment_key}}}:alerts"


def alerts_revision(experiment_key: str) -> str:
    """STRING revision of `alerts`, bumped by every write (writes compare and set it)."""
    return f"{PREFIX}:{{{experiment_key}}}:alerts:rev"


def alerts_history(experiment_key: str) -> str:
    """LIST of the experiment's resolved alerts (JSON), newest first, capped."""
    return f"{PREFIX}:{{{experiment_key}}}:alerts:history"


def webhooks() -> str:
    """HASH webhook id -> JSON registration, secret included (never served)."""
    return f"{PREFIX}:{{webhooks}}:hooks"


def webhook_outbox() -> str:
    """ZSET delivery id -> epoch ms when its next attempt is due (or its claim expires)."""
    return f"{PREFIX}:{{webhooks}}:outbox"


def webhook_pending() -> str:
    """HASH delivery id -> JSON of a delivery not yet ended (its record and body)."""
    return f"{PREFIX}:{{webhooks}}:pending"


def webhook_log(webhook_id: str) -> str:
    """LIST of one webhook's ended deliveries (delivered or failed), newest first, capped."""
    return f"{PREFIX}:{{webhooks}}:log:{webhook_id}"


# -- partition and bucket functions (stable: changing one moves stored data) ----------------


def unit_partition(unit_id: str, partitions: int) -> int:
    """The partition of ``unit_id``: bytes 4-7 of sha1(unit_id, UTF-8), big-endian, mod P.

    Bytes 0-3 are `unit_bucket_hash`, so the two choices are independent.
    """
    if partitions == 1:
        return 0
    digest = hashlib.sha1(unit_id.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[4:8], "big") % partitions


def unit_bucket_hash(unit_id: str) -> int:
    """Bytes 0-3 of sha1(unit_id, UTF-8) as an integer (the scripts compute it with
    ``redis.sha1hex``): places the unit in its partition's sticky table."""
    return int(hashlib.sha1(unit_id.encode("utf-8"), usedforsecurity=False).hexdigest()[:8], 16)


def event_digest(event_id: str) -> bytes:
    """The `EVENT_DIGEST_BYTES`-byte BLAKE2b digest of an event id: what dedupe tables store."""
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=EVENT_DIGEST_BYTES).digest()


def digest_bucket_hash(digest: bytes) -> int:
    """Bytes 0-3 of an event digest, big-endian: places the id in a day's table."""
    return int.from_bytes(digest[:4], "big")


def name_partition(name: str, partitions: int) -> int:
    """The events partition whose `unknown_metrics` hash counts metric ``name``: bytes 0-3
    of sha1(name, UTF-8), big-endian, mod Q."""
    digest = hashlib.sha1(name.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % partitions


def event_partition(digest: bytes, partitions: int) -> int:
    """The partition of an event: bytes 8-11 of its `event_digest`, big-endian, mod Q."""
    return int.from_bytes(digest[8:12], "big") % partitions


def bucket_of(h: int, level: int, split: int) -> int:
    """The linear hash table's bucket for hash ``h`` (what the scripts compute)."""
    b = h % (1 << level)
    return h % (1 << (level + 1)) if b < split else b


# -- Lua scripts ---------------------------------------------------------------------------
# Every script gets its key names through KEYS[] (from the functions above) and touches the
# keys of one hash tag only.  Registered by the modules that run them (`abtest.store`,
# `abtest.auth`, `abtest.export`).

# Linear hashing over small hashes (see the module docstring), shared by the scripts that
# keep tables: lh_state reads a table's position, lh_bucket finds a hash's bucket and
# lh_grow counts one more entry, splitting the next bucket when the table is full (it then
# returns true and marks the rewritten buckets in ``touched``).  A split
# rewrites both buckets (DEL + HSET), which also packs a bucket that had outgrown a listpack.
_LINEAR_HASHING: Final = f"""
local LOAD = {LINEAR_HASH_LOAD}
local function lh_state(level, split, count)
  return {{level = tonumber(level or '0'), split = tonumber(split or '0'),
          count = tonumber(count or '0')}}
end
local function lh_bucket(t, h)
  local m = 2 ^ t.level
  local b = h % m
  if b < t.split then b = h % (2 * m) end
  return b
end
local function lh_grow(t, prefix, hash_of, touched)
  t.count = t.count + 1
  local m = 2 ^ t.level
  if t.count <= LOAD * (m + t.split) then return false end
  local old, new = prefix .. ':' .. t.split, prefix .. ':' .. (t.split + m)
  local entries = redis.call('HGETALL', old)
  redis.call('DEL', old)
  local keep, move = {{}}, {{}}
  for i = 1, #entries, 2 do
    local side = move
    if hash_of(entries[i]) % (2 * m) == t.split then side = keep end
    side[#side + 1] = entries[i]
    side[#side + 1] = entries[i + 1]
  end
  if #keep > 0 then redis.call('HSET', old, unpack(keep)) end
  if #move > 0 then redis.call('HSET', new, unpack(move)) end
  touched[old], touched[new] = true, true  -- rewritten (or to be created later) afresh
  t.split = t.split + 1
  if t.split == m then t.level, t.split = t.level + 1, 0 end
  return true
end
"""

# KEYS: unit state (version, table position), exposures stream, counts, sticky bucket
# prefix, holdout stream of the unit's partition; unpartitioned experiments add the legacy
# sticky hash and the variant codes.  ARGV: config version, mode, unit_id, variant code
# ('': nothing to store), timestamp µs, UTC day, variant key, `unit_bucket_hash` of the
# unit, the covering holdout's name ('' none), the attributes kept with the exposure (''
# none).  Checks the caller's config version; mode 'check' stops there.  Mode 'sticky'
# returns a stored (sticky) variant, or stores the computed one and logs the first exposure
# (and, under a holdout, the unit's holdout entry with h=0).  Mode 'contact' (a holdout
# member, or a shipped experiment's unit, under a holdout) returns a stored entry, or stores
# the contact code ('h' member, 's' shipped non-member) and logs the holdout entry once.
# Replies {0, version} stale, {1, ''} nothing to store, {2, code} already stored, {3, code}
# stored now, {4, variant key} stored in the legacy hash only.
ASSIGN_SCRIPT: Final = (
    _LINEAR_HASHING
    + """
local function unit_hash(u) return tonumber(string.sub(redis.sha1hex(u), 1, 8), 16) end
local state = redis.call('HMGET', KEYS[1], 'version', 'lh', 'ls', 'ln')
if state[1] ~= ARGV[1] then return {0, state[1] or ''} end
if ARGV[2] == 'check' then return {1, ''} end
local contact = ARGV[2] == 'contact'
local unit = ARGV[3]
local t = lh_state(state[2], state[3], state[4])
local bucket = KEYS[4] .. ':' .. lh_bucket(t, tonumber(ARGV[8]))
local stored = redis.call('HGET', bucket, unit)
if stored then return {2, stored} end
local code, moved = ARGV[4], false
if KEYS[6] then
  local old = redis.call('HGET', KEYS[6], unit)
  if old then
    if contact then return {4, old} end
    code = redis.call('HGET', KEYS[7], old)
    if not code then return {4, old} end
    redis.call('HDEL', KEYS[6], unit)
    moved = true
  end
end
if code == '' then return {1, ''} end
redis.call('HSET', bucket, unit, code)
if lh_grow(t, KEYS[4], unit_hash, {}) then
  redis.call('HSET', KEYS[1], 'lh', t.level, 'ls', t.split, 'ln', t.count)
else
  redis.call('HSET', KEYS[1], 'ln', t.count)
end
if moved then return {2, code} end
if ARGV[9] ~= '' then
  local member = '0'
  if contact and code == 'h' then member = '1' end
  redis.call('XADD', KEYS[5], '*', 'u', unit, 'h', member, 't', ARGV[5], 'n', ARGV[9])
end
if contact then return {3, code} end
if (ARGV[10] or '') == '' then
  redis.call('XADD', KEYS[2], '*', 'u', unit, 'v', code, 't', ARGV[5], 'c', ARGV[1])
else
  redis.call('XADD', KEYS[2], '*', 'u', unit, 'v', code, 't', ARGV[5], 'c', ARGV[1],
             'a', ARGV[10])
end
redis.call('HINCRBY', KEYS[3], 'v:' .. ARGV[7], 1)
redis.call('HINCRBY', KEYS[3], 'd:' .. ARGV[6] .. ':' .. ARGV[7], 1)
return {3, code}
"""
)

# KEYS: meta, history of one experiment [, its rollout state [, its monitor lease]].
# Compare-and-set of a new version plus its audit entry; ARGV[1] == '' means "create"
# (ARGV[6]: the partition count, fixed from then on).  With a lease key, the write happens
# only while the lease holds ARGV[7] (the acting monitor's fencing value: a monitor that
# lost its lease cannot write); ARGV[8..] are field/value pairs set in the rollout state
# in the same step.  Replies 1 written, 0 version conflict, -1 lease lost.  All keys
# carry the experiment's hash tag.
WRITE_VERSION_SCRIPT: Final = """
local current = redis.call('HGET', KEYS[1], 'version')
if ARGV[1] == '' then
  if current then return 0 end
  redis.call('HSET', KEYS[1], 'created_at', ARGV[4], 'partitions', ARGV[6])
elseif current ~= ARGV[1] then
  return 0
end
if KEYS[4] and redis.call('GET', KEYS[4]) ~= ARGV[7] then return -1 end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'config', ARGV[3], 'updated_at', ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[5])
if KEYS[3] and #ARGV > 7 then redis.call('HSET', KEYS[3], unpack(ARGV, 8)) end
return 1
"""

# KEYS: monitor lease, rollout state of one experiment.  ARGV: token, TTL ms.  Takes the
# lease when it is free (a new epoch: HINCRBY lease_epoch), renews it when the token holds
# it, else leaves it.  Replies the epoch held, or 0 when another monitor holds it.  The
# lease's value "<token>:<epoch>" is the fencing value every write of the holder checks.
LEASE_SCRIPT: Final = """
local held = redis.call('GET', KEYS[1])
if held then
  local token, epoch = string.match(held, '^(.*):(%d+)$')
  if token ~= ARGV[1] then return 0 end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(epoch)
end
local epoch = redis.call('HINCRBY', KEYS[2], 'lease_epoch', 1)
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
return epoch
"""

# KEYS: monitor lease, rollout checks, rollout state of one experiment.  ARGV: fencing
# value, the check's JSON, the list's bound, then field/value pairs for the state.
# Appends one check record while the lease holds the fencing value; replies 1, or -1.
RECORD_CHECK_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
if #ARGV > 3 then redis.call('HSET', KEYS[3], unpack(ARGV, 4)) end
return 1
"""

# KEYS: the controlled clock.  Sets it to ARGV[1] (epoch µs) unless that would move it
# backwards; replies the clock's time after the call.
SET_CLOCK_SCRIPT: Final = """
local current = redis.call('GET', KEYS[1])
if tonumber(ARGV[1]) > tonumber(current or '0') then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return current
"""

# KEYS: meta, history of a versioned definition other than an experiment's (the global
# holdout, a catalogue metric).  Compare-and-set: the stored version (absent: '0') must be
# ARGV[1]; sets version ARGV[2], config ARGV[3] ('' when removed), updated_at ARGV[4]
# (created_at too, the first time) and appends the audit entry ARGV[5].  Replies 1 or 0.
WRITE_DEFINITION_SCRIPT: Final = """
local current = redis.call('HGET', KEYS[1], 'version') or '0'
if current ~= ARGV[1] then return 0 end
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[4])
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'config', ARGV[3], 'updated_at', ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[5])
return 1
"""

# KEYS: a partition's unit state.  Raises its version copy to ARGV[1], never lowers it.
RAISE_VERSION_SCRIPT: Final = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'version', ARGV[1]) end
return 1
"""

# KEYS: variant codes of one experiment.  Gives each variant key of ARGV that has no code
# the next free one (codes are never reused, so a stored code always means one variant).
VARIANT_CODES_SCRIPT: Final = """
local n = redis.call('HLEN', KEYS[1])
for i = 1, #ARGV do
  if redis.call('HSETNX', KEYS[1], ARGV[i], n) == 1 then n = n + 1 end
end
return n
"""

# KEYS[1] outcome stream, KEYS[2] today's id table, then the earlier days' tables, then
# ARGV[2] legacy per-day id sets.  ARGV[1]: seconds the ids are kept; then six values per
# event: digest, event_id, unit_id, metric, value, timestamp.  Replies {accepted,
# duplicates}.  Each bucket of today's table gets its expiry when it is created or
# rewritten by a split (a full window from then), not on every write.
RECORD_EVENTS_SCRIPT: Final = (
    _LINEAR_HASHING
    + """
local function digest_hash(d)
  local a, b, c, e = string.byte(d, 1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + e
end
local tables = {}
local last = #KEYS - tonumber(ARGV[2])
for k = 2, last do
  local raw = redis.call('HMGET', KEYS[k], 'lh', 'ls', 'ln')
  tables[k] = lh_state(raw[1], raw[2], raw[3])
end
local today, touched, known = tables[2], {}, {}
local accepted, duplicates, batch = 0, 0, {}
for i = 3, #ARGV, 6 do
  local digest, id = ARGV[i], ARGV[i + 1]
  local h = digest_hash(digest)
  local seen = batch[digest]
  if not seen then
    for k = 2, last do
      local t = tables[k]
      if t.count > 0 and redis.call('HEXISTS', KEYS[k] .. ':' .. lh_bucket(t, h), digest) == 1 then
        seen = true
        break
      end
    end
  end
  if not seen then
    for k = last + 1, #KEYS do
      if redis.call('SISMEMBER', KEYS[k], id) == 1 then seen = true break end
    end
  end
  if seen then
    duplicates = duplicates + 1
  else
    batch[digest] = true
    local bucket = KEYS[2] .. ':' .. lh_bucket(today, h)
    if known[bucket] == nil then  -- a bucket gets its expiry once, when it is created
      known[bucket] = redis.call('EXISTS', bucket) == 1
      if not known[bucket] then touched[bucket] = true end
    end
    redis.call('HSET', bucket, digest, '')
    lh_grow(today, KEYS[2], digest_hash, touched)
    redis.call('XADD', KEYS[1], '*', 'event_id', id, 'unit_id', ARGV[i + 2],
               'metric', ARGV[i + 3], 'value', ARGV[i + 4], 'timestamp', ARGV[i + 5])
    accepted = accepted + 1
  end
end
if accepted > 0 then
  redis.call('HSET', KEYS[2], 'lh', today.level, 'ls', today.split, 'ln', today.count)
  touched[KEYS[2]] = true
  for key in pairs(touched) do redis.call('EXPIRE', key, ARGV[1]) end
end
return {accepted, duplicates}
"""
)

# KEYS: metric_catalogue, metric_versions(name).  Compare-and-set of a catalogue entry:
# ARGV name, the version the caller read ('0': none yet), the new entry (JSON), its
# version entry (JSON).  Replies the version now current; unchanged means refused.
WRITE_METRIC_SCRIPT: Final = """
local current = redis.call('LLEN', KEYS[2])
if current ~= tonumber(ARGV[2]) then return current end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[4])
return current + 1
"""

# KEYS: unknown_metrics of one events partition.  ARGV[1]: most names kept (the rest are
# counted under '*', which no metric name can be), then name, count pairs.
COUNT_UNKNOWN_METRICS_SCRIPT: Final = """
local most = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local name = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], name) == 0 and redis.call('HLEN', KEYS[1]) >= most then
    name = '*'
  end
  redis.call('HINCRBY', KEYS[1], name, ARGV[i + 1])
end
return 1
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

# -- alerts and webhooks (`service.monitor.alerts`, `service.monitor.webhooks`) ------------

# KEYS: alerts, alerts_revision, alerts_history of one experiment.  ARGV[1]: the revision the
# caller read ('0' when none), ARGV[2]: history cap, then (op, field, value) triples: 'set'
# and 'del' on the active alerts, 'push' onto the history.  Applies all or nothing: 0 when
# another writer came first (the caller reads again), else the new revision.
APPLY_ALERTS_SCRIPT: Final = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 3 do
  local op = ARGV[i]
  if op == 'set' then redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  elseif op == 'del' then redis.call('HDEL', KEYS[1], ARGV[i + 1])
  else redis.call('LPUSH', KEYS[3], ARGV[i + 2]) end
end
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[2]) - 1)
return redis.call('INCR', KEYS[2])
"""

# KEYS: webhook_outbox.  ARGV: now (ms), claim (ms), limit.  Takes the due deliveries and
# pushes each one's due time past the claim, so a sender that dies mid-attempt leaves it to
# be tried again once the claim expires, and two senders never take the same one at once.
CLAIM_DELIVERIES_SCRIPT: Final = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
end
return due
"""

# KEYS: webhook_outbox, webhook_pending, the delivery's webhook_log.  ARGV: delivery id,
# its JSON, the next attempt's due time (ms; '' when it has ended), log cap.  A retry is
# rescheduled; an ended delivery leaves the queue for its webhook's log.
RECORD_DELIVERY_SCRIPT: Final = """
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
return 0
"""
