"""Where one offer's time goes: the timeline of a single offer with nothing else running.

A participant holds a long poll; the clock starts at the POST of an offer and notes when the
web tier's 202 arrives, when a worker received the task, started and finished it (Celery task
events, same machine, same clock) and when the waiting poll returned the answer. Medians over
`rounds` offers, each after a pause so that every process is idle when it starts.

`python -m bench offer_timeline` (prints JSON, writes bench/results/offer_timeline.json).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path

import gevent
from celery import Celery

from bench.client import Participant, Service
from bench.protocol import Fixtures
from bench.stack import deployment

RESULTS = Path(__file__).resolve().parent / "results"
MARKS = ("202_received", "task-received", "task-started", "task-succeeded", "answer_polled")


def _events(broker_url: str, into: dict) -> gevent.Greenlet:
    app = Celery("bench-timeline", broker=broker_url)

    def record(event: dict) -> None:
        if event.get("uuid"):
            into.setdefault(event["uuid"], {})[event["type"]] = event["timestamp"]

    def run() -> None:
        with app.connection_for_read() as conn:
            app.events.Receiver(conn, handlers={"*": record}).capture(limit=None, timeout=None, wakeup=False)

    return gevent.spawn(run)


def _hold_poll(member: Participant, polled: dict) -> None:
    """One waiting long poll of `member`, on its poll connection; notes when it returned."""
    messages = member.poll_once(10)
    polled["at"], polled["types"] = time.time(), [m["type"] for m in messages]


def measure(base: str, broker_url: str, rounds: int, pause_s: float) -> dict:
    events: dict[str, dict[str, float]] = {}
    receiver = _events(broker_url, events)
    gevent.sleep(1.0)  # the receiver's queue must exist before the first task
    sdp = Fixtures.load().publish
    session = Service(base).create_session(max_participants=256)
    rows = []
    for index in range(rounds + 3):
        member = Participant(base, session, f"t{index}")
        member.join(confirm=False)
        member.poll_once(0.5)
        polled: dict = {}
        waiter = threading.Thread(target=_hold_poll, args=(member, polled))
        waiter.start()
        time.sleep(pause_s)
        known = set(events)
        started = time.time()
        member.post_offer("publish", sdp)
        accepted = time.time()
        waiter.join()
        member.stop()
        time.sleep(0.3)  # the task's last events
        offer_tasks = [e for task_id, e in events.items() if task_id not in known and "task-received" in e]
        if index < 3 or not offer_tasks or "sdpAnswer" not in polled.get("types", []):
            continue  # warm-up, or an answer that came with other messages
        task = min(offer_tasks, key=lambda e: e["task-received"])
        rows.append(
            {
                "202_received": accepted,
                **{k: task.get(k, float("nan")) for k in MARKS[1:4]},
                "answer_polled": polled["at"],
                "_start": started,
            }
        )
    receiver.kill(block=False)
    return {mark: round(statistics.median((r[mark] - r["_start"]) * 1000 for r in rows), 2) for mark in MARKS} | {
        "offers": len(rows)
    }


def main(rounds: int = 25, pause_s: float = 0.3) -> dict:
    with deployment(workers=1) as (base, procs):
        time.sleep(2)
        result = {"ms_after_post_median": measure(base, procs["web"].extra["env"]["RABBITMQ_URL"], rounds, pause_s)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "offer_timeline.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    main()
