"""The per-unit figures docs/scaling.md quotes, from the phases of bench/capacity.py."""

from __future__ import annotations

TIERS = ["web", "workers", "mongodb", "emulator"]
PARTICIPANT_PHASES = [
    "joins",
    "publish_offers",
    "publish_candidates",
    "subscribe_offers",
    "subscribe_candidates",
    "polls_drain",
    "polls_empty",
]
TASK_PHASES = [
    ("sessions", "media.create_session"),
    ("joins", "media.announce_join"),
    ("publish_offers", "media.process_offer"),
    ("publish_candidates", "media.add_candidates"),
    ("subscribe_offers", "media.process_offer (subscribe)"),
    ("subscribe_candidates", "media.add_candidates (subscribe)"),
    ("chat", "media.send_message"),
]


def _cpu(p: dict, phase: str, name: str) -> float:
    return float(p[phase]["cpu"][name]["cpu_s"]) if name in p[phase]["cpu"] else 0.0


def _participant(p: dict) -> dict:
    count = p["joins"]["per_unit"]["units"]
    subs_per = p["subscribe_offers"]["per_unit"]["units"] / count
    rss = {t: sum(p[ph]["cpu"][t]["rss_delta_mib"] for ph in PARTICIPANT_PHASES if t in p[ph]["cpu"]) for t in TIERS}
    return {
        "definition": f"joined, publishing, subscribed to {subs_per:.0f} others, "
        "candidates trickled, queue drained once",
        "cpu_ms": {t: round(1000 * sum(_cpu(p, ph, t) for ph in PARTICIPANT_PHASES) / count, 2) for t in TIERS},
        "rss_kib": {t: round(1024 * rss[t] / count, 1) for t in TIERS},
        "mongo_writes": round(sum(p[ph]["mongo_writes"] for ph in PARTICIPANT_PHASES) / count, 1),
    }


def _mongo_writes(p: dict, polls_with_messages: int) -> dict:
    def per(phase: str) -> float:
        return float(p[phase]["per_unit"]["mongo_writes"])

    return {
        "session_create": per("sessions"),
        "join": per("joins"),
        "offer_publish": per("publish_offers"),
        "offer_subscribe": per("subscribe_offers"),
        "candidates_post": per("publish_candidates"),
        "poll_with_messages": round(p["polls_drain"]["mongo_writes"] / max(polls_with_messages, 1), 2),
        "message_delivered": p["polls_drain"]["per_message"]["mongo_writes"],
        "poll_empty": per("polls_empty"),
        "chat_post": per("chat"),
    }


def _idle_poll(idle: dict) -> dict:
    held = max(idle.get("polls_pending_during_sample", 0), 1)
    loaded, rest = idle["web_holding_polls"], idle["web_at_rest"]
    cpu = loaded["cpu_percent_of_one_core"] - rest["cpu_percent_of_one_core"]
    return {
        "held": idle.get("polls_pending_during_sample"),
        "web_rss_kib_per_poll": round(1024 * (loaded["rss_mib"] - rest["rss_mib"]) / held, 1),
        "web_cpu_percent_of_core_per_1000_polls": round(1000 * cpu / held, 2),
    }


def _task_cpu(p: dict) -> dict:
    out = {}
    for phase, task in TASK_PHASES:
        n = sum(p[phase]["tasks"].values()) or 1
        out[task] = {
            "worker_cpu_ms": round(1000 * _cpu(p, phase, "workers") / n, 2),
            "wall_ms": next(iter(p[phase]["task_wall_ms_mean"].values()), None),
        }
    return out


def summarize(results: dict) -> dict:
    p = results["phases"]
    sessions = p["sessions"]["per_unit"]["units"]
    rabbitmq = results["rabbitmq"]
    return {
        "session": {
            "cpu_ms": {t: round(1000 * _cpu(p, "sessions", t) / sessions, 2) for t in TIERS},
            "mongo_writes": p["sessions"]["per_unit"]["mongo_writes"],
        },
        "participant": _participant(p),
        "mongo_writes_per": _mongo_writes(p, results["polls_with_messages"]),
        "idle_poll": _idle_poll(results["idle_polls"]),
        "task_cpu": _task_cpu(p),
        "rabbitmq": {
            "queues_per_participant": rabbitmq["queues_per_participant"],
            "participant_queue_bytes_idle": rabbitmq["participant_queue_memory_bytes_drained"],
            "participant_queue_bytes_loaded": rabbitmq["participant_queue_memory_bytes_loaded"],
        },
    }
