"""B1 for Dramatiq: N no-op `add_numbers` messages through Redis, executed by
`dramatiq` workers (2 processes x 8 threads by default); prints
{"runs_per_s": ...} measured from the first enqueue to the last completion
(each completion increments a Redis counter).

B2 (`latency RATE SECS`): submits at RATE a second for SECS seconds, open
loop, and prints p50/p99/max of submit->start and submit->completed (the
actor's body returned) in ms; see _latency.py.

Run by `taskflow-bench`: python dramatiq_bench.py N [processes] [threads], or
python dramatiq_bench.py latency RATE SECS [processes] [threads], with BENCH_REDIS_URL set."""

import json
import os
import subprocess
import sys
import time

import dramatiq
import redis

import _latency
from dramatiq.brokers.redis import RedisBroker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:56379/0")
dramatiq.set_broker(RedisBroker(url=URL))
COUNTER = redis.Redis.from_url(URL)


@dramatiq.actor(max_retries=0)
def add_numbers(a, b):
    COUNTER.incr(_latency.DONE)
    return a + b


@dramatiq.actor(max_retries=0)
def add_numbers_timed(a, b, scheduled):
    """B2: `add_numbers` that records its start and end against its schedule."""
    done = _latency.record(COUNTER, scheduled)
    result = a + b
    done()
    return result


def main():
    latency = sys.argv[1] == "latency"
    args = sys.argv[3:] if latency else sys.argv[1:]
    n = 0 if latency else int(args[0])
    processes = args[1] if len(args) > 1 else "2"
    threads = args[2] if len(args) > 2 else "8"
    COUNTER.flushdb()
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=here)
    if latency:
        # An idle Redis consumer sleeps between polls, backing off from 5 ms
        # up to the worker timeout (default 1000 ms: p99 ~440 ms at 100
        # submits/s); cap it at 10 ms, as one tuning for latency would.
        env["dramatiq_worker_timeout"] = "10"
    workers = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "dramatiq_bench", "--processes", processes, "--threads", threads],
        cwd=here, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Warm up: workers are up once a message has gone through.
        add_numbers.send(0, 0)
        _latency.wait_for(COUNTER, 1, 120)
        time.sleep(1.0)  # the other worker process too
        COUNTER.set(_latency.DONE, 0)
        if latency:
            rate, secs = float(sys.argv[2]), float(args[0])
            _latency.run(COUNTER, lambda i: add_numbers.send(i, 1), lambda i, scheduled: add_numbers_timed.send(i, 1, scheduled), rate, secs)
            return
        start = time.monotonic()
        for i in range(n):
            add_numbers.send(i, 1)
        _latency.wait_for(COUNTER, n, 1800)
        elapsed = time.monotonic() - start
        print(json.dumps({"runs_per_s": n / elapsed, "n": n}))
    finally:
        workers.terminate()
        try:
            workers.wait(30)
        except subprocess.TimeoutExpired:
            workers.kill()


if __name__ == "__main__":
    main()
