"""Per-thread script connections: the pool's guarantees kept without its per-command checkout."""

from __future__ import annotations

import gc
import os
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from abtest.store import Store
from abtest.thread_connections import ThreadConnections
from tests.conftest import simple_config

ECHO = "return ARGV[1]"


def _clients(redis_client: redis.Redis) -> int:
    return len(redis_client.client_list(_type="normal"))


def test_scripts_run_again_after_the_server_forgets_them(store: Store, redis_client):
    """After SCRIPT FLUSH (as after a restart) assign loads its script again, same answer."""
    store.create_experiment(simple_config("exp"), key_id="t")
    store.start_experiment("exp", key_id="t")
    first, _ = store.assign("exp", "u1")
    redis_client.script_flush()
    again, _ = store.assign("exp", "u1")
    assert again == first
    assert redis_client.xlen("abtest:{exp}:exposures") == 1


def test_a_connection_closed_by_the_server_is_replaced(redis_url: str, redis_client):
    """With a retry policy (as the service has), a killed held connection is reopened."""
    client = redis.Redis.from_url(redis_url, decode_responses=True, retry=Retry(NoBackoff(), 1))
    try:
        store = Store(client)
        store.create_experiment(simple_config("exp"), key_id="t")
        store.start_experiment("exp", key_id="t")
        first, _ = store.assign("exp", "u1")
        assert redis_client.client_kill_filter(_type="normal", skipme=True) >= 1
        again, _ = store.assign("exp", "u1")
        assert again == first
        assert redis_client.xlen("abtest:{exp}:exposures") == 1
    finally:
        client.close()


def test_an_interrupted_reply_is_never_read_as_the_next_one(redis_url: str, redis_client):
    """A command that timed out leaves no late reply behind for the next command to read."""
    client = redis.Redis.from_url(
        redis_url, decode_responses=True, socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    try:
        script = client.register_script(ECHO)
        scripts = ThreadConnections(client)
        assert scripts.evalsha(script, [], ["warm"]) == "warm"
        redis_client.client_pause(600, all=True)
        with pytest.raises(redis.TimeoutError):
            scripts.evalsha(script, [], ["first"])
        time.sleep(0.7)  # the server has now answered "first" on the old socket
        assert scripts.evalsha(script, [], ["second"]) == "second"
    finally:
        client.close()


def test_each_thread_holds_one_connection_and_gives_it_back(redis_url: str, redis_client):
    """Threads that come and go reuse pooled connections instead of opening new ones."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        script = client.register_script(ECHO)
        scripts = ThreadConnections(client)
        before = _clients(redis_client)
        for i in range(30):
            thread = threading.Thread(target=scripts.evalsha, args=(script, [], [str(i)]))
            thread.start()
            thread.join()
            gc.collect()
        assert _clients(redis_client) - before <= 1

        results: list[str] = []
        barrier = threading.Barrier(8)

        def concurrent(n: int) -> None:
            barrier.wait()
            results.extend(scripts.evalsha(script, [], [f"{n}-{k}"]) for k in range(50))

        threads = [threading.Thread(target=concurrent, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == sorted(f"{n}-{k}" for n in range(8) for k in range(50))
    finally:
        client.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connection(redis_url: str):
    """After a fork (gunicorn workers) parent and child never share one socket."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        script = client.register_script(ECHO)
        scripts = ThreadConnections(client)
        assert scripts.evalsha(script, [], ["parent"]) == "parent"
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: answer through the pipe, never return into pytest
            code = 1
            try:
                answers = [scripts.evalsha(script, [], [f"child-{k}"]) for k in range(200)]
                ok = answers == [f"child-{k}" for k in range(200)]
                os.write(write_end, b"ok" if ok else b"wrong")
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        parent = [scripts.evalsha(script, [], [f"parent-{k}"]) for k in range(200)]
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read_end, "rb") as pipe:
            assert pipe.read() == b"ok"
        assert os.waitstatus_to_exitcode(status) == 0
        assert parent == [f"parent-{k}" for k in range(200)]
    finally:
        client.close()


def test_pipelined_calls_answer_in_order_and_an_error_reply_keeps_the_connection_in_step(
    redis_client,
):
    """evalsha_many: replies in order; an error reply comes back in its slot, nothing shifts."""
    script = redis_client.register_script(
        "if ARGV[1] == 'bad' then return redis.error_reply('no good') end return ARGV[1]"
    )
    scripts = ThreadConnections(redis_client)
    replies = scripts.evalsha_many(script, [([], ["a"]), ([], ["bad"]), ([], ["c"])])
    assert replies[0] == "a" and replies[2] == "c"
    assert isinstance(replies[1], redis.ResponseError) and "no good" in str(replies[1])
    with pytest.raises(redis.ResponseError, match="no good"):
        scripts.evalsha(script, [], ["bad"])
    assert scripts.evalsha(script, [], ["after"]) == "after"
    assert scripts.evalsha_many(script, [([], [str(i)]) for i in range(200)]) == [
        str(i) for i in range(200)
    ]


def test_pipelined_calls_load_a_forgotten_script_again(redis_client):
    """After SCRIPT FLUSH a pipelined batch runs again, with every reply in its place."""
    script = redis_client.register_script(ECHO)
    scripts = ThreadConnections(redis_client)
    assert scripts.evalsha_many(script, [([], ["warm"])]) == ["warm"]
    redis_client.script_flush()
    assert scripts.evalsha_many(script, [([], ["x"]), ([], ["y"])]) == ["x", "y"]


@pytest.mark.parametrize("redis_topology", ["cluster"], indirect=True)
def test_pipelined_calls_over_several_shards_answer_in_call_order(redis_client):
    """On a cluster, calls whose keys live on different masters are sent to each at once and
    answered in the order given."""
    script = redis_client.register_script("return ARGV[1]")
    names = [f"{{k{i}}}" for i in range(30)]
    nodes = {redis_client.get_node_from_key(name).name for name in names}
    assert len(nodes) == 3
    replies = ThreadConnections(redis_client).evalsha_many(
        script, [([name], [name]) for name in names] + [([], ["no key"])]
    )
    assert replies == [*names, "no key"]
