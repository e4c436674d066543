"""What dramatiq_bench.py and celery_bench.py share: waiting for their
tasks to be done (B1 and B2), and B2's open-loop latency: submits on a
fixed schedule, each carrying its scheduled wall-clock time; the task
records when it started and when its body returned, so a stalled producer
or broker shows in the figures instead of hiding (no coordinated
omission)."""

import json
import math
import time

LATENCIES = "bench:lat"
DONE = "bench:done"


def wait_for(counter, count, timeout):
    """Waits until the tasks have counted `count` in DONE."""
    deadline = time.monotonic() + timeout
    while int(counter.get(DONE) or 0) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {counter.get(DONE)} of {count} done in {timeout}s")
        time.sleep(0.002)


def record(counter, scheduled):
    """Called first thing in the task: returns a closure to call at its end."""
    started = time.time()

    def done():
        ended = time.time()
        counter.rpush(LATENCIES, f"{started - scheduled},{ended - scheduled}")

    return done


def quantiles_ms(values):
    """p50, p99 and max (nearest rank, like an HDR histogram's value at a
    quantile) of seconds, in milliseconds."""
    ordered = sorted(values)

    def at(q):
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000.0

    return at(0.5), at(0.99), ordered[-1] * 1000.0


def run(counter, warm, send, rate, secs, timeout=300):
    """Warms every worker process and thread with 64 plain submits
    (`warm(i)`, each counted in DONE), then sends `rate * secs`
    timed ones (`send(i, scheduled)`), the i-th at start + i/rate (wall
    clock), waits for each to be recorded and prints the JSON line of
    figures."""
    counter.set(DONE, 0)
    for i in range(64):
        warm(i)
    wait_for(counter, 64, 120)
    time.sleep(1.0)
    n = max(1, int(rate * secs))
    counter.delete(LATENCIES)
    start = time.time() + 0.05
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.time()
        if delay > 0:
            time.sleep(delay)
        send(i, scheduled)
    deadline = time.monotonic() + timeout
    while counter.llen(LATENCIES) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {counter.llen(LATENCIES)} of {n} recorded in {timeout}s")
        time.sleep(0.01)
    pairs = [tuple(float(x) for x in item.split(b",")) for item in counter.lrange(LATENCIES, 0, -1)]
    start_q = quantiles_ms([p[0] for p in pairs])
    completed_q = quantiles_ms([p[1] for p in pairs])
    print(json.dumps({
        "n": n,
        "start_p50_ms": start_q[0], "start_p99_ms": start_q[1], "start_max_ms": start_q[2],
        "completed_p50_ms": completed_q[0], "completed_p99_ms": completed_q[1], "completed_max_ms": completed_q[2],
    }))
