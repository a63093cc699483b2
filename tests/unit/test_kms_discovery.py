"""KMS discovery from DNS (KMS_DISCOVERY_DNS), against a real DNS server on loopback.

Time is the discovery's own clock, advanced by the test, so re-resolution and forgetting are
checked without waiting.
"""

from __future__ import annotations

import pytest

from media_tasks.kms_discovery import FORGET_AFTER_S, Discovery, MediaServers, Target, media_servers
from settings import load_settings
from tests.support.dns_server import LoopbackDns
from tests.support.fake_clock import FakeClock

NAME = "kms-headless.rtc.svc.cluster.local"


@pytest.fixture
def dns():
    server = LoopbackDns({NAME: ["127.0.0.3", "127.0.0.2"]})
    server.start()
    yield server
    server.close()


@pytest.fixture
def clock():
    return FakeClock()


def discovery(dns: LoopbackDns, clock: FakeClock, spec: str = f"{NAME}:8888", interval_s: float = 5.0) -> Discovery:
    return Discovery(Target.parse(spec), interval_s, resolver=dns.resolver(), clock=clock)


@pytest.mark.parametrize(
    ("spec", "target"),
    [
        (f"{NAME}:8888", Target(NAME, 8888, "kurento")),
        (NAME, Target(NAME, 8888, "kurento")),
        (f"{NAME}:9000/kms", Target(NAME, 9000, "kms")),
    ],
)
def test_the_setting_names_host_port_and_path(spec, target):
    assert Target.parse(spec) == target


def test_every_a_record_is_one_media_server(dns, clock):
    assert discovery(dns, clock).urls() == ["ws://127.0.0.2:8888/kurento", "ws://127.0.0.3:8888/kurento"]
    assert discovery(dns, clock, f"{NAME}:9000/kms").urls()[0] == "ws://127.0.0.2:9000/kms"


def test_the_name_is_resolved_again_once_per_interval(dns, clock):
    found = discovery(dns, clock, interval_s=5.0)
    found.urls()
    dns.records[NAME] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    clock.now += 4.9
    assert len(found.urls()) == 2 and dns.queries == 1
    clock.now += 0.1
    assert found.urls()[-1] == "ws://127.0.0.4:8888/kurento" and dns.queries == 2


def test_a_server_that_leaves_dns_stays_listed_until_the_health_monitor_could_see_it_die(dns, clock):
    found = discovery(dns, clock, interval_s=1.0)
    found.urls()
    dns.records[NAME] = ["127.0.0.3"]
    clock.now += FORGET_AFTER_S
    assert found.urls() == ["ws://127.0.0.2:8888/kurento", "ws://127.0.0.3:8888/kurento"]
    clock.now += 1.0
    assert found.urls() == ["ws://127.0.0.3:8888/kurento"]


def test_a_failing_dns_keeps_the_last_answer_and_a_name_without_records_means_none(dns, clock):
    found = discovery(dns, clock, interval_s=1.0)
    before = found.urls()
    dns.failing = True
    clock.now += FORGET_AFTER_S + 10
    assert found.urls() == before, "a DNS outage must not drop the media servers"
    dns.failing = False
    clock.now += 1.0
    assert found.urls() == before
    del dns.records[NAME]  # NXDOMAIN: the Service has no ready pod left
    clock.now += 1.0
    assert found.urls() == before, "still within the grace"
    clock.now += FORGET_AFTER_S
    assert found.urls() == []


def test_kms_urls_are_the_configured_ones_then_the_discovered_ones(dns, clock):
    servers = MediaServers(("ws://static:8888/kurento", "ws://127.0.0.3:8888/kurento"), discovery(dns, clock))
    assert servers.urls() == ["ws://static:8888/kurento", "ws://127.0.0.3:8888/kurento", "ws://127.0.0.2:8888/kurento"]


def test_settings_use_discovery_only_when_asked_and_keep_kms_urls_working():
    plain = load_settings({"SECRET_KEY": "x", "KMS_URLS": "ws://a:8888/kurento,ws://b:8888/kurento"})
    assert plain.kms_urls == ("ws://a:8888/kurento", "ws://b:8888/kurento")
    assert media_servers(plain).discovery is None
    assert media_servers(plain).urls() == ["ws://a:8888/kurento", "ws://b:8888/kurento"]
    discovered = media_servers(load_settings({"SECRET_KEY": "x", "KMS_DISCOVERY_DNS": f"{NAME}:8888"}))
    assert discovered.static == () and discovered.discovery is not None
    assert discovered.discovery.target == Target(NAME, 8888, "kurento")
    both = media_servers(
        load_settings({"SECRET_KEY": "x", "KMS_DISCOVERY_DNS": NAME, "KMS_URLS": "ws://a:8888/kurento"})
    )
    assert both.static == ("ws://a:8888/kurento",)
    assert both.discovery is discovered.discovery, "one discovery per name in a process"


def test_doctor_reports_what_the_name_resolves_to_and_how_to_fix_a_missing_one(dns, clock):
    import dataclasses

    from signaling_cli.doctor import check_kms_discovery

    settings = dataclasses.replace(load_settings({"SECRET_KEY": "x"}), kms_discovery_dns=NAME, kms_urls=())
    servers = MediaServers((), discovery(dns, clock))
    check = check_kms_discovery(settings, servers)
    assert check.ok and check.name == f"kms discovery {NAME}"
    assert check.detail.startswith("2 media server(s): 127.0.0.2, 127.0.0.3")
    del dns.records[NAME]
    check = check_kms_discovery(settings, servers)
    assert not check.ok and "NXDOMAIN" in check.detail and "headless Service" in check.fix
