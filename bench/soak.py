"""`python -m bench soak`: minutes of session churn while every resource is sampled; all must stay flat.

Churn (open loop): a session starts every 1/`rate` s, at most MAX_IN_FLIGHT at once (beyond that
the pacer waits: the rate achieved is reported beside the rate asked). Each session is created,
4 participants join (each with its long poll), publish (chromium-publish.sdp and its trickled
candidates), subscribe to the 3 others, send a broadcast and a direct message and wait until they
hold the other 3 broadcasts, leave, and the session is closed (DELETE). A session that fails at any
step is left and closed, and started again once as a fresh session (`retried`).

The deployment is bench/stack.py's, with two signaling-mode KMS emulators (as in the other benches:
no media) so that a killed one leaves the other to serve. Lifetimes are shortened so that every
bounded one ends within the warm-up: RETENTION_S=60 / LIFETIME_SWEEP_S=10 (left participants with
their outbox, closed sessions and task starts are deleted a minute after their end) and
PARTICIPANT_QUEUE_EXPIRES_S=60 (a left participant's queue is unbound, not deleted, and expires).
With the defaults (24 h, 300 s) documents and queues grow at the churn rate by design until their
lifetime has passed once: that is retention, not a leak.

Sampled every `sample` s (series names in soak.json):

- `rss_mib/P`, `fds/P`, `threads/P` of every process tree P: web (gunicorn master and worker),
  worker1, worker2 (Celery, thread pool), mongo (nx-27017), kms, kms2, loadgen (this process), and
  rabbitmq (the machine's shared beam.smp: other users of the broker move it too);
- `rabbitmq/queues|messages|consumers|connections|channels` of the deployment's own vhost
  (`rabbitmqctl`: no management plugin needed);
- `mongodb/<collection>`: count_documents per collection, and `mongodb/data_mib` (the stand-in's files);
- `kms/<K>/pipelines|webrtc_endpoints|other_elements|sessions` per emulator, asked over the
  Kurento protocol (ServerManager getPipelines/getSessions, MediaPipeline getChildren), which a
  real KMS answers the same way.

Verdict per series, over the samples after warm-up (first `warmup` s; with `--kill-midway` also
before the kill, and again from `warmup` s after the kill: the restarted processes warm up too):
the least-squares slope, per minute and as the growth it projects over 10 min in % of the
series' mean. `flat` when that growth is at most FLAT_PCT % of the mean or at most the series'
floor (FLOORS: 2 MiB, 2 fds/threads/objects/documents); above it, `noisy` when the slope is
within 2 standard errors of zero (no trend the samples can tell from their scatter), else `GROWS`.

`--kill-midway`: at half time one Celery worker and one emulator (the first to hold a pipeline)
get SIGKILL (whole process tree) and are started again at once, as a supervisor would, the worker
under its name and metrics port, the emulator on its port (same URL, no objects). Reported: the
sessions that failed and were retried, and `all_ok_after_s`: from the kill, every session started
that much later or more completed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import psutil
from gevent.pool import Pool

from bench.client import Participant, Service
from bench.machine import machine
from bench.procstats import broker_processes, load_now
from bench.protocol import Fixtures
from signaling_cli import processes
from signaling_cli.processes import ManagedProcess

RESULTS = Path(__file__).resolve().parent / "results"
PARTICIPANTS = 4
MAX_IN_FLIGHT = 12
STEP_TIMEOUT_S = 20.0
FLAT_PCT = 5.0
FLOORS = {"rss_mib": 2.0}
DEFAULT_FLOOR = 2.0
SOAK_ENV = {"RETENTION_S": "60", "LIFETIME_SWEEP_S": "10", "PARTICIPANT_QUEUE_EXPIRES_S": "60"}


# --- the churn -------------------------------------------------------------------------------------


@dataclass
class SessionRun:
    started: float  # seconds since the soak began
    attempt: int
    ended: float = 0.0
    ok: bool = False
    step: str = ""
    error: str = ""
    media_lost: bool = False  # a participant got mediaServerLost (its KMS died under it)


@dataclass
class Churn:
    base: str
    fx: Fixtures
    t0: float
    runs: list[SessionRun] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def session(self, index: int) -> None:
        for attempt in (1, 2):
            run = SessionRun(self.now(), attempt)
            self.runs.append(run)
            try:
                self._script(index, run)
                run.ok = True
            except Exception as exc:  # noqa: BLE001 - a failed session is a figure, not the end
                run.error = f"{type(exc).__name__}: {str(exc)[:200]}"
            run.ended = self.now()
            if run.ok:
                return

    def _script(self, index: int, run: SessionRun) -> None:
        fx, timeout = self.fx, STEP_TIMEOUT_S
        service = Service(self.base)
        members: list[Participant] = []
        session: dict | None = None
        try:
            run.step = "create"
            session = service.create_session(max_participants=PARTICIPANTS, name=f"soak{index}")
            members = [Participant(self.base, session, f"s{index}a{run.attempt}p{k}") for k in range(PARTICIPANTS)]

            def each(step: str, fn: Callable[[Participant], Any], waits: int = 1) -> None:
                """`fn` for every member at once; the first failure fails the session. `waits`:
                how many waits of up to `timeout` one `fn` makes in turn."""
                run.step = step

                def quietly(me: Participant) -> BaseException | None:  # gevent would print the traceback
                    try:
                        fn(me)
                    except Exception as exc:  # noqa: BLE001
                        return exc
                    return None

                jobs = [gevent.spawn(quietly, m) for m in members]
                limit = timeout * waits + 5
                gevent.joinall(jobs, timeout=limit)
                gevent.killall([j for j in jobs if not j.dead])
                for job in jobs:
                    if not job.successful() or job.value is not None:
                        raise job.value or TimeoutError(f"{step}: still running after {limit} s")

            def join(me: Participant) -> None:
                me.connect()
                me.join()

            each("join", join)
            each("publish", lambda m: m.offer(fx.publish, fx.publish_candidates, timeout=timeout))

            def subscribe_all(me: Participant) -> None:
                for other in members:
                    if other is not me:
                        me.subscribe(other, fx.subscribe, fx.subscribe_candidates, timeout=timeout)

            each("subscribe", subscribe_all, waits=PARTICIPANTS - 1)

            def chat(me: Participant) -> None:
                me.send({"hello": me.name})
                me.send({"direct": me.name}, to=members[(members.index(me) + 1) % len(members)])

            each("chat", chat)

            def hear_all(me: Participant) -> None:
                for other in members:
                    if other is not me:
                        payload = {"hello": other.name}

                        def heard(message: dict, payload: dict = payload) -> bool:
                            return me.carries(message, payload)

                        me.inbox.wait_for(heard, timeout)

            each("chat delivered", hear_all, waits=PARTICIPANTS - 1)
            run.step = "leave"
            for member in members:
                member.leave()
            run.step = "close"
            service.close_session(session["session_id"])
            session = None
            run.step = "done"
        finally:
            run.media_lost = any(m.inbox.find(lambda msg: msg["type"] == "mediaServerLost") for m in members)
            for member in members:
                member.stop()
            if session is not None:  # a failed session is still cleaned up, as a careful backend would
                for member in members:
                    member.leave()
                try:
                    service.close_session(session["session_id"])
                except Exception:  # noqa: BLE001
                    pass
            service.http.close()

    def run(self, rate: float, until: float) -> Pool:
        """Paces sessions until `until` (soak seconds); returns the pool to join."""
        pool = Pool(MAX_IN_FLIGHT)
        index, next_at = 0, self.now()
        while True:
            gevent.sleep(max(0.0, next_at - self.now()))
            if self.now() >= until:
                return pool
            pool.spawn(self.session, index)  # waits while MAX_IN_FLIGHT sessions are running
            index += 1
            next_at = max(next_at + 1 / rate, self.now())  # a late start is not made up for by a burst


# --- the samples -----------------------------------------------------------------------------------


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _tree_figures(pids: list[int]) -> dict[str, float]:
    rss = fds = threads = 0.0
    for proc in (p for pid in pids for p in _tree(pid)):
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss / 2**20
                threads += proc.num_threads()
                fds += proc.num_fds()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return {"rss_mib": round(rss, 1), "fds": fds, "threads": threads}


def _rabbitmqctl(*args: str) -> list[list[str]]:
    argv = ["rabbitmqctl", "-q", "--no-table-headers", *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def rabbitmq_figures(vhost: str) -> dict[str, float]:
    queues = _rabbitmqctl("list_queues", "-p", vhost, "name", "messages", "consumers")
    conns = [row for row in _rabbitmqctl("list_connections", "vhost", "channels") if row[0] == vhost]
    return {
        "queues": len(queues),
        "messages": sum(int(row[1]) for row in queues if len(row) > 2 and row[1].isdigit()),
        "consumers": sum(int(row[2]) for row in queues if len(row) > 2 and row[2].isdigit()),
        "connections": len(conns),
        "channels": sum(int(row[1]) for row in conns if len(row) > 1 and row[1].isdigit()),
    }


class KmsProbe:
    """One Kurento client per emulator, made again after a failure (the emulator was restarted)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client: Any = None

    def figures(self) -> dict[str, float]:
        import kurento
        from kurento.objects import MediaPipeline

        for attempt in (0, 1):
            try:
                if self.client is None:
                    self.client = kurento.KurentoClient(self.url, request_timeout=5.0)
                manager = self.client.server_manager
                pipelines = manager.get_pipelines()
                kinds = {"webrtc_endpoints": 0, "other_elements": 0}
                for pipeline_id in pipelines:
                    try:
                        children = MediaPipeline(self.client, pipeline_id).invoke("getChildren")
                    except Exception:  # noqa: BLE001 - released between the two requests
                        continue
                    for child in children:
                        kinds["webrtc_endpoints" if child.endswith("WebRtcEndpoint") else "other_elements"] += 1
                # Ours is one of them: it is the probe's own.
                return {"pipelines": len(pipelines), **kinds, "sessions": len(manager.get_sessions()) - 1}
            except Exception:  # noqa: BLE001
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001
                pass
            self.client = None


@dataclass
class Sampler:
    procs: dict[str, ManagedProcess]
    mongo_uri: str
    data_dir: Path
    vhost: str
    kms: dict[str, KmsProbe]
    beam_pids: list[int]
    mongo: Any = None

    def sample(self) -> dict[str, float]:
        from pymongo import MongoClient

        values: dict[str, float] = {}
        trees = {name: [proc.pid] for name, proc in self.procs.items()}
        trees |= {"loadgen": [os.getpid()], "rabbitmq": self.beam_pids}
        for name, pids in trees.items():
            for kind, value in _tree_figures(pids).items():
                values[f"{kind}/{name}"] = value
        for kind, value in rabbitmq_figures(self.vhost).items():
            values[f"rabbitmq/{kind}"] = value
        if self.mongo is None:
            self.mongo = MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000)
        db = self.mongo.get_default_database()
        for name in sorted(db.list_collection_names()):
            values[f"mongodb/{name}"] = db[name].count_documents({})
        size = sum(f.stat().st_size for f in self.data_dir.rglob("*") if f.is_file())
        values["mongodb/data_mib"] = round(size / 2**20, 2)
        for name, probe in self.kms.items():
            for kind, value in probe.figures().items():
                values[f"kms/{name}/{kind}"] = value
        return values


# --- the verdicts ----------------------------------------------------------------------------------


def slope(points: list[tuple[float, float]]) -> dict[str, Any]:
    """Least squares over (seconds, value): slope per minute, its standard error, the mean."""
    n = len(points)
    if n < 3:
        return {"n": n, "slope_per_min": None}
    xs = [t / 60 for t, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    residual = sum((y - my - b * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True))
    se = (residual / (n - 2) / sxx) ** 0.5
    return {"n": n, "mean": my, "slope_per_min": b, "slope_se": se}


def verdict(series: str, fit: dict[str, Any]) -> dict[str, Any]:
    if fit.get("slope_per_min") is None:
        return fit | {"verdict": "too few samples"}
    growth = fit["slope_per_min"] * 10
    mean = fit["mean"]
    floor = FLOORS.get(series.split("/")[0], DEFAULT_FLOOR)
    pct = 100 * growth / mean if mean else None
    if abs(growth) <= max(FLAT_PCT / 100 * abs(mean), floor):
        word = "flat"
    elif abs(fit["slope_per_min"]) <= 2 * fit["slope_se"]:
        word = "noisy"
    else:
        word = "GROWS" if growth > 0 else "falls"
    return {
        "n": fit["n"],
        "mean": round(mean, 2),
        "slope_per_min": round(fit["slope_per_min"], 4),
        "slope_se": round(fit["slope_se"], 4),
        "growth_per_10min": round(growth, 3),
        "growth_pct_of_mean_per_10min": None if pct is None else round(pct, 2),
        "verdict": word,
    }


def analyse(samples: list[dict], windows: dict[str, tuple[float, float]]) -> dict[str, dict[str, dict]]:
    names = sorted({k for s in samples for k in s["values"]})
    out: dict[str, dict[str, dict]] = {}
    for window, (lo, hi) in windows.items():
        out[window] = {}
        for name in names:
            points = [(s["t"], s["values"].get(name, 0.0)) for s in samples if lo <= s["t"] <= hi]
            out[window][name] = verdict(name, slope(points))
    return out


# --- the run ---------------------------------------------------------------------------------------


def _restart_worker(old: ManagedProcess) -> ManagedProcess:
    env = old.extra["env"]
    new = processes.start_worker(env, old.log_path.parent, name=old.name)
    new.extra["env"] = env
    return new


def _kill_tree(proc: ManagedProcess) -> None:
    for victim in reversed(_tree(proc.pid)):
        try:
            victim.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.popen.wait(10)


def _restart_kms(old: ManagedProcess) -> ManagedProcess:
    new, _ = processes.start_emulator(old.log_path.parent, mode="signaling", port=old.port, name=old.name)
    return new


def kill_midway(
    procs: dict[str, ManagedProcess], kms: dict[str, KmsProbe], now: Callable[[], float], wait_s: float = 30.0
) -> dict[str, Any]:
    """SIGKILL of worker1 and of the emulator holding more pipelines, both restarted at once. A call
    lasts seconds at a light churn, so the kill waits (up to `wait_s`) for a KMS holding one: the
    death of an idle one would test nothing."""
    began = now()
    while True:
        held = {name: probe.figures()["pipelines"] for name, probe in kms.items()}
        if any(held.values()) or now() - began > wait_s:
            break
        gevent.sleep(0.2)
    kms_name = max(held, key=lambda n: held[n])
    report: dict[str, Any] = {"at_s": round(now(), 1), "worker": "worker1", "kms": kms_name, "pipelines_held": held}
    for name, restart in (("worker1", _restart_worker), (kms_name, _restart_kms)):
        old = procs[name]
        _kill_tree(old)
        began = time.monotonic()
        procs[name] = restart(old)
        report[f"{name}_restart_s"] = round(time.monotonic() - began, 2)
    return report


def windows_for(duration: float, warmup: float, kill_at: float | None) -> dict[str, tuple[float, float]]:
    """The stretches fitted: after warm-up, and its second half (a step to a new high-water mark,
    e.g. a pool grown at a peak, is flat there; a leak grows in both)."""
    if kill_at is None:
        return {"after_warmup": (warmup, duration + 1), "second_half": (max(warmup, duration / 2), duration + 1)}
    return {"before_kill": (warmup, kill_at), "after_kill": (kill_at + warmup, duration + 1)}


def drain(sampler: Sampler, now: Callable[[], float], limit_s: float = 60.0) -> dict[str, Any]:
    """Once every session is closed: until no KMS holds a pipeline (up to `limit_s`), then one sample.
    What a closed session leaves behind shows here without the churn's in-flight noise."""
    began = now()
    while now() - began < limit_s:
        try:
            if not any(probe.figures()["pipelines"] for probe in sampler.kms.values()):
                break
        except Exception:  # noqa: BLE001 - asked again
            pass
        gevent.sleep(1.0)
    return {"t": round(now(), 1), "waited_s": round(now() - began, 1), "values": sampler.sample()}


def churn_report(runs: list[SessionRun], paced_s: float, kill_at: float | None) -> dict[str, Any]:
    done = [r for r in runs if r.ok]
    failed = [r for r in runs if not r.ok]
    firsts = [r for r in runs if r.attempt == 1]
    out: dict[str, Any] = {
        "sessions_started": len(firsts),
        "sessions_completed": len(done),
        "attempts_failed": len(failed),
        "sessions_that_got_media_server_lost": sum(1 for r in runs if r.media_lost),
        "sessions_retried": sum(1 for r in runs if r.attempt == 2),
        "sessions_lost": sum(1 for r in runs if r.attempt == 2 and not r.ok),
        # Over the time sessions were being started (the last ones end before the soak does).
        "completed_per_s": round(len(done) / paced_s, 3),
        "session_s_p50": _quantile([r.ended - r.started for r in done], 0.5),
        "session_s_p95": _quantile([r.ended - r.started for r in done], 0.95),
        "failures": [
            {"started_s": round(r.started, 1), "ended_s": round(r.ended, 1), "attempt": r.attempt, "step": r.step}
            | {"error": r.error}
            for r in failed
        ][:50],
    }
    if kill_at is not None:
        after = [r for r in runs if r.started >= kill_at - STEP_TIMEOUT_S * 2]
        bad = [r.started for r in after if not r.ok]
        out["failed_after_kill"] = len(bad)
        out["media_lost"] = [{"started_s": round(r.started, 1), "ok": r.ok} for r in runs if r.media_lost]
        # From the kill on, every session started this much later or more completed.
        out["all_ok_after_s"] = round(max(0.0, max(bad) - kill_at), 1) if bad else 0.0
        out["last_failure_ended_after_kill_s"] = (
            round(max(r.ended for r in after if not r.ok) - kill_at, 1) if bad else None
        )
    return out


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def main(
    duration: float = 600.0,
    rate: float = 0.3,
    sample_s: float = 30.0,
    warmup: float | None = None,
    kill: bool = False,
    out: Path = RESULTS,
    name: str | None = None,
) -> dict:
    from bench.stack import deployment

    out.mkdir(parents=True, exist_ok=True)
    name = name or ("soak-kill" if kill else "soak")
    warmup = min(120.0, duration / 4) if warmup is None else warmup
    load, started_at = load_now(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"soak: {duration:.0f} s at {rate}/s, load at start {load['loadavg_1min']} on {load['cpu_count']} CPUs")
    with deployment(workers=2, kms_mode="signaling", kms_count=2, env=SOAK_ENV) as (base, procs):
        procs = dict(procs)
        web = procs["web"].extra
        env = web["env"]
        kms_urls = env["KMS_URLS"].split(",")
        kms_names = sorted(n for n in procs if n.startswith("kms"))
        sampler = Sampler(
            procs=procs,
            mongo_uri=env["MONGODB_URI"],
            data_dir=web["run_dir"] / "mongo",
            vhost=web["vhost"],
            kms={n: KmsProbe(u) for n, u in zip(kms_names, kms_urls, strict=True)},
            beam_pids=[p.pid for p in broker_processes(5672)],
        )
        t0 = time.monotonic()
        churn = Churn(base, Fixtures.load(), t0)
        samples: list[dict] = []
        sample_errors: list[str] = []

        def take() -> None:
            t = churn.now()
            try:
                values = sampler.sample()
            except Exception as exc:  # noqa: BLE001 - a missed sample is reported, the soak goes on
                sample_errors.append(f"{t:.0f} s: {type(exc).__name__}: {exc}"[:300])
                return
            ok = [r for r in churn.runs if r.ok]
            recent = [r.ended - r.started for r in ok if r.ended >= t - sample_s]
            in_flight = sum(1 for r in churn.runs if not r.ended)
            samples.append(
                {
                    "t": round(t, 1),
                    "sessions_completed": len(ok),
                    "sessions_in_flight": in_flight,
                    # How long the sessions that ended since the last sample took: rising = not sustained.
                    "session_s_p50_recent": _quantile(recent, 0.5),
                    "loadavg_1min": round(os.getloadavg()[0], 2),
                    "values": values,
                }
            )
            print(
                f"soak: {t:5.0f} s  {len(ok)} sessions done, {in_flight} in flight, "
                f"recent p50 {_quantile(recent, 0.5)} s, load {os.getloadavg()[0]:.2f}",
                flush=True,
            )

        def sample_loop() -> None:
            k = 0
            while churn.now() <= duration + 0.5:
                take()
                k += 1
                gevent.sleep(max(0.0, k * sample_s - churn.now()))

        kill_report: dict[str, Any] | None = None
        kill_at = duration / 2 if kill else None

        def killer() -> None:
            nonlocal kill_report
            assert kill_at is not None
            gevent.sleep(max(0.0, kill_at - churn.now()))
            kill_report = kill_midway(procs, sampler.kms, churn.now)
            sampler.procs = procs
            print(f"soak: killed and restarted {kill_report}", flush=True)

        sampler_job = gevent.spawn(sample_loop)
        killer_job = gevent.spawn(killer) if kill else None
        try:
            # Sessions start until the last sample (which must see the churn as every other one
            # did), then those in flight finish.
            paced = duration
            pool = churn.run(rate, paced)
            sampler_job.join()
            pool.join(timeout=STEP_TIMEOUT_S * 6)
            drained = drain(sampler, churn.now)
            if killer_job is not None:
                killer_job.join()
        finally:
            for probe in sampler.kms.values():
                probe.close()
            for proc in procs.values():  # the restarted ones are ours to stop
                proc.stop()
        elapsed = churn.now()
    if kill_report is not None:
        kill_at = kill_report["at_s"]
    windows = windows_for(duration, warmup, kill_at)
    slopes = analyse(samples, windows)
    result = {
        "name": name,
        "started_at": started_at,
        "machine": machine(),
        "load_at_start": load,
        "settings": {
            "duration_s": duration,
            "rate_per_s": rate,
            "sample_s": sample_s,
            "warmup_s": warmup,
            "kill_midway": kill,
            "participants": PARTICIPANTS,
            "max_in_flight": MAX_IN_FLIGHT,
            "kms_mode": "signaling",
            "env": SOAK_ENV,
            "flat": f"growth over 10 min (slope) <= max({FLAT_PCT} % of mean, floor {FLOORS} else {DEFAULT_FLOOR})",
        },
        "churn": churn_report(churn.runs, paced, kill_at),
        "kill": kill_report,
        "windows": windows,
        "slopes": slopes,
        "sample_errors": sample_errors,
        "samples": samples,
        "drained": drained,
        "elapsed_s": round(elapsed, 1),
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    try:
        from bench.soak_plot import plot

        plot(result, out / f"{name}.png")
    except Exception:  # noqa: BLE001 - the figures are in the JSON either way
        traceback.print_exc()
    print_report(result)
    print(f"soak: wrote {out / (name + '.json')} and {name}.png", flush=True)
    return result


def print_report(result: dict) -> None:
    churn = result["churn"]
    print(
        f"\nchurn: {churn['sessions_completed']} sessions completed ({churn['completed_per_s']}/s, asked "
        f"{result['settings']['rate_per_s']}/s), {churn['attempts_failed']} attempts failed, "
        f"{churn['sessions_retried']} retried, {churn['sessions_lost']} lost; load at start "
        f"{result['load_at_start']['loadavg_1min']} on {result['load_at_start']['cpu_count']} CPUs"
    )
    if result["kill"]:
        print(f"kill: {result['kill']}; all sessions ok from {churn.get('all_ok_after_s')} s after the kill")
    if result.get("drained"):
        drained = result["drained"]
        left = {k: v for k, v in drained["values"].items() if k.startswith(("kms/", "rabbitmq/", "mongodb/"))}
        print(f"drained (after {drained['waited_s']} s): {left}")
    for window, fits in result["slopes"].items():
        print(f"\n{window} {result['windows'][window]}: slope per min, growth per 10 min in % of mean, verdict")
        width = max(len(n) for n in fits)
        for name, fit in fits.items():
            if fit.get("slope_per_min") is None:
                print(f"  {name:<{width}}  {fit['verdict']}")
                continue
            pct = fit["growth_pct_of_mean_per_10min"]
            print(
                f"  {name:<{width}}  mean {fit['mean']:>10}  {fit['slope_per_min']:>+10.3f}/min "
                f"(±{fit['slope_se']:.3f})  {'' if pct is None else f'{pct:+.1f} %':>9}  {fit['verdict']}"
            )


def reanalyse(path: Path) -> dict:
    """The windows, slopes, plot and report of a saved soak.json again (e.g. after a change here)."""
    result = json.loads(path.read_text())
    st = result["settings"]
    kill_at = result["kill"]["at_s"] if result.get("kill") else None
    result["windows"] = windows_for(st["duration_s"], st["warmup_s"], kill_at)
    result["slopes"] = analyse(result["samples"], result["windows"])
    path.write_text(json.dumps(result, indent=2, default=str))
    from bench.soak_plot import plot

    plot(result, path.with_suffix(".png"))
    print_report(result)
    return result


if __name__ == "__main__":
    import sys

    reanalyse(Path(sys.argv[1]))
