"""B1 for Celery 5: N no-op `add_numbers` tasks through Redis, executed by
2 `celery worker` processes with the threads pool (8 threads each, by
default), results ignored; prints {"runs_per_s": ...} measured from the
first `delay` to the last completion (each completion increments a Redis
counter).

B2 (`latency RATE SECS`): submits at RATE a second for SECS seconds, open
loop, and prints p50/p99/max of submit->start and submit->completed (the
actor's body returned) in ms; see _latency.py.

Run by `taskflow-bench`: python celery_bench.py N [processes] [threads], or
python celery_bench.py latency RATE SECS [processes] [threads], with BENCH_REDIS_URL set."""

import json
import os
import subprocess
import sys
import time

import redis
from celery import Celery

import _latency

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:56379/0")
app = Celery("celery_bench", broker=URL)
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
COUNTER = redis.Redis.from_url(URL)


@app.task(name="add_numbers")
def add_numbers(a, b):
    COUNTER.incr(_latency.DONE)
    return a + b


@app.task(name="add_numbers_timed")
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
    processes = int(args[1]) if len(args) > 1 else 2
    threads = args[2] if len(args) > 2 else "8"
    COUNTER.flushdb()
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=here)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_bench", "worker", "--pool", "threads",
             "--concurrency", threads, "-n", f"bench{k}@%h", "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=here, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for k in range(processes)
    ]
    try:
        add_numbers.delay(0, 0)
        _latency.wait_for(COUNTER, 1, 120)
        time.sleep(1.0)  # the other worker process too
        COUNTER.set(_latency.DONE, 0)
        if latency:
            rate, secs = float(sys.argv[2]), float(args[0])
            _latency.run(COUNTER, lambda i: add_numbers.delay(i, 1), lambda i, scheduled: add_numbers_timed.delay(i, 1, scheduled), rate, secs)
            return
        start = time.monotonic()
        for i in range(n):
            add_numbers.delay(i, 1)
        _latency.wait_for(COUNTER, n, 1800)
        elapsed = time.monotonic() - start
        print(json.dumps({"runs_per_s": n / elapsed, "n": n}))
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()


if __name__ == "__main__":
    main()
