"""bench/counting.py and bench/table.py turn counters into per-offer figures and target rows."""

from __future__ import annotations

from collections import Counter

from bench import counting
from bench.table import targets

POLL = "GET /api/v1/sessions/<session_id>/participants/<participant_id>/messages"


def test_counts_per_offer_less_what_the_deployment_does_by_itself():
    start = Counter({"web|update:participants|-": 10})
    end = Counter(
        {
            "web|update:participants|-": 14,  # 4 in 2 s, of which 2 per s are the lease renewer
            f"web|findAndModify:participants|{POLL}": 4,
            f"web|insert:outbox|{POLL}": 4,
            "workers|find:endpoints|-": 6,
        }
    )
    net = counting.net(start, end, {"web|update:participants|-": 1.0}, 2.0)
    figures = counting.mongo_per_offer(net, offers=2, delivering_polls=4)
    assert figures["ops_per_offer"] == 8.0
    assert figures["by_tier"] == {"web": 5.0, "workers": 3.0}
    assert figures["by_command"] == {"find": 3.0, "findAndModify": 2.0, "insert": 2.0, "update": 1.0}
    # Poll writes: the poll's own and those outside any request (a release after the response).
    assert figures["writes_per_delivering_poll"] == 2.5


def test_kms_round_trips_are_null_when_the_workers_do_not_export_them():
    start = {"requests": {"invoke": 2.0}, "round_trips": None}
    end = {"requests": {"invoke": 8.0, "create": 2.0}, "round_trips": None}
    figures = counting.kms_per_offer(start, end, offers=2)
    assert figures["requests_per_offer"] == 4.0
    assert figures["round_trips_per_offer"] is None


def test_targets_say_met_not_met_or_missing():
    ours = {
        "cpu_per_offer": {"all_tiers_but_mongo_cpu_ms_per_offer": 11.0, "mongo_cpu_ms_per_offer": 5.0},
        "sustained": {"sustained_offers_per_s": 160},
        "calls": {
            "sessions": 2,
            "participants": 2,
            "latency_ms": {"offer_to_answer": {"n": 4, "p99": 10}, "subscribe_offer_to_answer": {"n": 3}},
        },
    }
    rows = {t["figure"]: t["met"] for t in targets(ours, {})}
    assert rows["CPU ms per offer, all tiers but the MongoDB stand-in"] is True
    assert rows["CPU ms per offer in the MongoDB stand-in"] is False
    assert rows["sustained offers/s with p95 <= 50 ms"] is True
    assert rows["2 x 2: offers never answered"] is False  # one subscribe of four never answered
    assert rows["KMS round trips per offer (counted)"] is None
