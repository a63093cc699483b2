"""`python -m bench.loadgen`: the `calls` scenario (bench/scenarios/calls.py) alone against a
throw-away deployment of ours, e.g. `--sessions 10 --participants 4` (prints JSON)."""

from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse
import json


def main() -> None:
    from bench.client import OurSystem
    from bench.protocol import Fixtures
    from bench.scenarios.calls import calls
    from bench.stack import deployment

    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0, help="joins per second")
    parser.add_argument("--duration", type=float, default=60.0, help="hard limit, seconds")
    args = parser.parse_args()
    with deployment() as (base, procs):
        system = OurSystem(base, procs)
        result = calls(system, Fixtures.load(), args.sessions, args.participants, args.rate, args.duration)
        result.pop("_samples", None)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
