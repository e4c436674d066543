"""B1 for Dramatiq: N no-op `add_numbers` messages through Redis, executed by
`dramatiq` workers (2 processes x 8 threads by default); prints
{"runs_per_s": ...} measured from the first enqueue to the last completion
(each completion increments a Redis counter).

Run by `taskflow-bench`: python dramatiq_bench.py N [processes] [threads]
with BENCH_REDIS_URL set."""

import json
import os
import subprocess
import sys
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:56379/0")
dramatiq.set_broker(RedisBroker(url=URL))
COUNTER = redis.Redis.from_url(URL)


@dramatiq.actor(max_retries=0)
def add_numbers(a, b):
    COUNTER.incr("bench:done")
    return a + b


def wait_for(count, timeout):
    deadline = time.monotonic() + timeout
    while int(COUNTER.get("bench:done") or 0) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {COUNTER.get('bench:done')} of {count} done in {timeout}s")
        time.sleep(0.002)


def main():
    n = int(sys.argv[1])
    processes = sys.argv[2] if len(sys.argv) > 2 else "2"
    threads = sys.argv[3] if len(sys.argv) > 3 else "8"
    COUNTER.flushdb()
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=here)
    workers = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "dramatiq_bench", "--processes", processes, "--threads", threads],
        cwd=here, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Warm up: workers are up once a message has gone through.
        add_numbers.send(0, 0)
        wait_for(1, 120)
        time.sleep(1.0)  # the other worker process too
        COUNTER.set("bench:done", 0)
        start = time.monotonic()
        for i in range(n):
            add_numbers.send(i, 1)
        wait_for(n, 1800)
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
