"""The KMS pool on discovered media servers: emulators on loopback addresses 127.0.0.2 and
127.0.0.3 (one port, as pods of a StatefulSet), named by a DNS server on loopback the way a
headless Service names its pods. The health monitor checks what DNS lists, selection picks the
lightest of them, and a server that leaves DNS because it died is still checked until it is
recorded dead."""

from __future__ import annotations

import dataclasses
import secrets

import pytest

import kurento
from media_tasks.kms_discovery import Discovery, Target, media_servers, register_discovery
from media_tasks.kms_health import HealthMonitor
from media_tasks.kms_pool import select_kms
from models import MediaServer, connect_db
from settings import load_settings
from signaling_cli import processes
from tests.support.dns_server import LoopbackDns
from tests.support.emulator import EmulatorProcess

pytestmark = pytest.mark.integration

NAME = "kms-headless.rtc.svc.cluster.local"


def start_emulator_on(address: str, port: int, log_dir, memory_offset_kib: int = 0) -> EmulatorProcess:
    return EmulatorProcess(
        log_dir, "signaling", host=address, port=port, memory_offset_kib=memory_offset_kib, name=f"kms-{address}"
    ).start()


@pytest.fixture
def cluster(run_dir, mongodb_uri):
    """Two media servers found through DNS; the heavier one (by 100 MiB) on 127.0.0.3."""
    port = processes.free_port()
    log_dir = run_dir / "logs-discovery"
    light = start_emulator_on("127.0.0.2", port, log_dir)
    heavy = start_emulator_on("127.0.0.3", port, log_dir, memory_offset_kib=100 * 1024)
    dns = LoopbackDns({NAME: ["127.0.0.2", "127.0.0.3"]})
    dns.start()
    discovery = Discovery(Target(NAME, port), interval_s=0.0, resolver=dns.resolver())
    database = mongodb_uri.rsplit("/", 1)[0] + f"/signaling_discovery_{secrets.token_hex(3)}"
    settings = dataclasses.replace(
        load_settings({"MONGODB_URI": database, "SECRET_KEY": "x"}),
        kms_urls=(),
        kms_discovery_dns=f"{NAME}:{port}",
        kms_discovery_interval_s=0.0,
    )
    register_discovery(discovery)
    connect_db(settings)
    try:
        yield settings, dns, port, light, heavy
    finally:
        dns.close()
        for proc in (light, heavy):
            proc.stop()


def test_the_pool_selects_and_monitors_the_media_servers_dns_names(cluster):
    settings, dns, port, light, heavy = cluster
    light_url, heavy_url = f"ws://127.0.0.2:{port}/kurento", f"ws://127.0.0.3:{port}/kurento"
    assert media_servers(settings).urls() == [light_url, heavy_url]

    monitor = HealthMonitor(settings)
    monitor.check_all()
    assert {s.url for s in MediaServer.objects(alive=True)} == {light_url, heavy_url}
    assert select_kms(settings) == light_url, "lowest memory wins among the discovered servers"
    pipeline = kurento.get_client(select_kms(settings)).create_pipeline()
    assert pipeline.id in kurento.KurentoClient(light_url).server_manager.get_pipelines()

    # The light server's pod dies: its record leaves DNS, but it is still checked until it is
    # recorded dead (and its sessions would get mediaServerLost); then selection avoids it.
    light.kill()
    dns.records[NAME] = ["127.0.0.3"]
    assert light_url in media_servers(settings).urls()
    for _ in range(3):
        monitor.check_all()
    assert not MediaServer.objects(url=light_url).first().alive
    assert select_kms(settings) == heavy_url

    # Scaling up: a new pod appears in DNS and takes the new pipelines (it is the lightest).
    newcomer = start_emulator_on("127.0.0.4", port, light.log_path.parent)
    try:
        dns.records[NAME] = ["127.0.0.3", "127.0.0.4"]
        monitor.check_all()
        assert select_kms(settings) == f"ws://127.0.0.4:{port}/kurento"
    finally:
        newcomer.stop()
