"""The `signaling` command."""

from __future__ import annotations

import argparse
import os
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signaling", description="Kurento signaling service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the whole service in the foreground (what `make run` does)")
    worker = sub.add_parser("worker", help="run one Celery worker consuming every shard queue")
    worker.add_argument("--name", default="worker1")
    webhooks = sub.add_parser("webhooks", help="run the webhook worker (delivers WEBHOOK_URLS events)")
    webhooks.add_argument("--name", default="webhooks")
    web = sub.add_parser("web", help="run the web tier under gunicorn with gevent")
    web.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    emulator = sub.add_parser("emulator", help="run the KMS emulator")
    emulator.add_argument("args", nargs=argparse.REMAINDER)
    bench = sub.add_parser("bench", help="run the benchmarks (python -m bench)")
    bench.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("doctor", help="check broker, database, media servers and workers; say how to fix problems")
    return parser


def _command_line(args: argparse.Namespace) -> list[str]:
    """The program a process command becomes (exec'd, so signals reach it directly)."""
    from signaling_cli import processes

    if args.command == "worker":
        queues = processes.all_shard_queues(dict(os.environ))
        return [
            processes.PYTHON,
            "-m",
            "celery",
            "-A",
            "media_tasks.app",
            "worker",
            "-Q",
            queues,
            "-n",
            f"{args.name}@%h",
        ]
    if args.command == "webhooks":
        return processes.webhook_worker_argv(dict(os.environ), args.name)
    if args.command == "web":
        gunicorn = str(processes.BIN / "gunicorn")
        bind = f"127.0.0.1:{args.port}"
        return [
            gunicorn,
            "-k",
            "gevent",
            "--bind",
            bind,
            "--config",
            processes.GUNICORN_CONFIG,
            "signaling_web.wsgi:app",
        ]
    if args.command == "bench":
        return [processes.PYTHON, "-m", "bench", *args.args]
    return [processes.PYTHON, "-m", "kms_emulator", *args.args]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "doctor":
        from signaling_cli.doctor import main as doctor

        return doctor()
    if args.command == "run":
        from signaling_cli.supervisor import run

        return run()
    from signaling_cli import processes

    command = _command_line(args)
    os.chdir(processes.ROOT)
    os.execv(command[0], command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
