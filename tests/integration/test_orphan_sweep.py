"""Endpoints no record names (a worker killed between creating one and storing it) are released
by the sweep, after the grace; recorded ones, and ones recorded during the grace, never are."""

from __future__ import annotations

import dataclasses
import time

import pytest

import kurento
from media_tasks.orphan_sweep import OrphanSweeper
from models import PUBLISH, Endpoint, Session
from settings import load_settings
from tests.conftest import read_fixture

pytestmark = pytest.mark.integration


@pytest.fixture
def kms(kms_url):
    client = kurento.KurentoClient(kms_url, request_timeout=10.0)
    yield client
    client.close()


def test_an_unrecorded_endpoint_is_released_after_the_grace_and_nothing_else(api, db, kms, stack):
    session = api.create_session()
    alice = api.join(session, "alice")
    alice.wait_type("sdpAnswer", request_id=alice.offer(read_fixture("chromium-publish.sdp")))
    stored = Endpoint.find(alice.participant_id, PUBLISH).kurento.id
    pipeline = kms.proxy(Session.objects(id=session["session_id"]).first().pipeline.id, kurento.MediaPipeline)
    orphan = pipeline.create_webrtc_endpoint()  # as a killed worker leaves it: created, never stored
    late = pipeline.create_webrtc_endpoint()  # created, and stored during the grace

    sweeper = OrphanSweeper(dataclasses.replace(load_settings(stack.env), orphan_grace_s=5.0))
    now = time.time()
    assert sweeper.sweep(now) == 0  # first sighting starts the grace
    Endpoint(
        session_id=session["session_id"],
        participant_id="late-writer",
        stream=PUBLISH,
        kurento=kms.proxy(late.id, kurento.WebRtcEndpoint),
    ).save(force_insert=True)
    assert sweeper.sweep(now + 2) == 0  # still within the grace
    assert sweeper.sweep(now + 6) == 1

    children = set(pipeline.invoke("getChildren"))
    assert orphan.id not in children
    assert {stored, late.id} <= children
    # The participant's endpoint was not touched: it still answers.
    assert kms.proxy(stored, kurento.WebRtcEndpoint).get_local_session_descriptor().startswith("v=0")


def test_an_unrecorded_recorder_is_released_and_a_running_recordings_one_is_not(keyed, keyed_db, kms, keyed_stack):
    from models import Recording

    session = keyed.create_session()
    sid = session["session_id"]
    alice = keyed.join(session, "alice")
    alice.wait_type("sdpAnswer", request_id=alice.offer(read_fixture("chromium-publish.sdp")))
    url = f"{keyed.base}/api/v1/sessions/{sid}/recordings"
    created = keyed.http.post(url, json={"participant_id": alice.participant_id}, headers=keyed.key_headers)
    rid = created.json()["recording_id"]
    alice.wait_type("recordingStarted", recording_id=rid)
    running = Recording.find(rid).kurento.id
    pipeline = kms.proxy(Session.objects(id=sid).first().pipeline.id, kurento.MediaPipeline)
    # As a start that lost to a stop and then died before releasing its recorder leaves it.
    orphan = pipeline.create_recorder_endpoint("file:///tmp/orphan.webm")

    sweeper = OrphanSweeper(dataclasses.replace(load_settings(keyed_stack.env), orphan_grace_s=5.0))
    now = time.time()
    assert sweeper.sweep(now) == 0
    assert sweeper.sweep(now + 6) == 1
    children = set(pipeline.invoke("getChildren"))
    assert orphan.id not in children and running in children
    assert kms.proxy(running).invoke("getState") == "START"
