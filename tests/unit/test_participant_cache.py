"""signaling_web.participant_cache: what it may trust, and for how long."""

from __future__ import annotations

from signaling_web.participant_cache import ParticipantCache, Ticket


def test_a_read_that_saw_it_joined_is_trusted_for_the_ttl_from_the_read() -> None:
    cache = ParticipantCache(ttl_s=2.0)
    ticket = cache.ticket()
    cache.remember("s1", "p1", ticket)
    assert cache.is_joined("s1", "p1")
    assert not cache.is_joined("s2", "p1")  # a token of another session is never vouched for
    cache.remember("s1", "p2", Ticket(at=ticket.at - 5.0, forgets=ticket.forgets))  # a read 5 s ago
    assert not cache.is_joined("s1", "p2")


def test_a_forget_during_a_read_wins_over_what_the_read_saw() -> None:
    cache = ParticipantCache(ttl_s=2.0)
    ticket = cache.ticket()  # a read starts...
    cache.forget("p1")  # ...this process handles p1's leave meanwhile...
    cache.remember("s1", "p1", ticket)  # ...and the read's "joined" is stale
    assert not cache.is_joined("s1", "p1")
    cache.remember("s1", "p1", cache.ticket())
    cache.forget_session("s1")
    assert not cache.is_joined("s1", "p1")


def test_a_ttl_of_zero_never_trusts() -> None:
    cache = ParticipantCache(ttl_s=0.0)
    cache.remember("s1", "p1", cache.ticket())
    assert not cache.is_joined("s1", "p1")
