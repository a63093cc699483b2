"""Any worker, any order, any number of times: the guarantees of DESIGN.md under real races."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import kurento
from models import PUBLISH, Endpoint, Session
from tests.conftest import read_fixture
from tests.support.kms_watch import PipelineCreations

pytestmark = pytest.mark.integration

PUBLISH_SDP = read_fixture("chromium-publish.sdp")


def test_two_worker_processes_serve_one_session(api, db):
    session = api.create_session(max_participants=10)
    members = [api.join(session, f"p{i}") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        request_ids = list(pool.map(lambda m: m.offer(PUBLISH_SDP), members))
    for member, request_id in zip(members, request_ids, strict=True):
        member.wait_type("sdpAnswer", request_id=request_id)
    stored = Session.objects(id=session["session_id"]).first()
    assert stored.pipeline is not None
    endpoints = Endpoint.objects(session_id=session["session_id"], stream=PUBLISH)
    assert endpoints.count() == 8 and all(e.kurento is not None for e in endpoints)
    assert {e.kurento.id.split("/")[0] for e in endpoints} == {stored.pipeline.id}  # all in the one pipeline
    logs = [w.log_path.read_text() for w in db.workers]
    assert all("media.process_offer" in log for log in logs), "each worker process ran offers"


def test_a_redelivered_offer_answers_once(api, db, task_sender):
    session = api.create_session()
    alice = api.join(session, "alice")
    alice.wait_type("participantJoined", participant_id=alice.participant_id)
    request_id = uuid.uuid4().hex
    args = dict(
        session_id=session["session_id"],
        participant_id=alice.participant_id,
        stream=PUBLISH,
        sdp=PUBLISH_SDP,
        request_id=request_id,
    )
    task_sender("media.process_offer", **args)
    task_sender("media.process_offer", **args)  # the same message again, as after a lost ack
    alice.wait_type("iceGatheringDone", stream=PUBLISH)
    time.sleep(1.0)
    alice.poll(wait=0.5)
    answers = [m for m in alice.inbox if m["type"] == "sdpAnswer" and m["request_id"] == request_id]
    assert len(answers) == 1
    assert Endpoint.objects(participant_id=alice.participant_id, stream=PUBLISH).count() == 1


def test_redelivered_leave_announces_once(api, db, task_sender):
    session = api.create_session()
    alice = api.join(session, "alice")
    bob = api.join(session, "bob")
    alice.leave()
    bob.wait_type("participantLeft", participant_id=alice.participant_id)
    task_sender(
        "media.finish_leave",
        session_id=session["session_id"],
        participant_id=alice.participant_id,
        reason="left",
        was_publishing=False,
    )
    assert bob.send({"marker": 1}).status_code == 202
    bob.wait_type("message")
    assert [m["type"] for m in bob.inbox].count("participantLeft") == 1


def _race_for_pipeline(env: dict, session_id: str, threads: int, results) -> None:
    from media_tasks.kms_pool import ensure_pipeline
    from models import connect_db
    from settings import load_settings

    settings = load_settings(env)
    connect_db(settings)
    with ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(lambda _i: ensure_pipeline(settings, session_id).id, range(threads)))
    results.extend(ids)


def test_racing_workers_create_exactly_one_pipeline(db):
    session = Session(max_participants=4)
    session.save(force_insert=True)
    kms_url = db.env["KMS_URLS"].split(",")[0]
    manager = kurento.KurentoClient(kms_url).server_manager
    before = set(manager.get_pipelines())
    creations = PipelineCreations(kms_url)
    with multiprocessing.Manager() as shared:
        results = shared.list()
        workers = [
            multiprocessing.get_context("spawn").Process(
                target=_race_for_pipeline, args=(db.env, session.id, 4, results)
            )
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        ids = list(results)
    assert len(ids) == 8 and len(set(ids)) == 1
    # One creator claimed the creation; nobody made a pipeline only to release it.
    assert creations.pipelines() == ids[:1]
    creations.close()
    assert set(manager.get_pipelines()) - before == set(ids)
    manager.client.close()
