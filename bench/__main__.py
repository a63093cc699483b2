"""`python -m bench`: the whole side-by-side benchmark (ours and Janus), JSON + PNG under bench/results.

`python -m bench suite` is the default; `python -m bench offer_latency` runs the older one-client
benchmark alone; `python -m bench offer_timeline` the timeline of one offer across the tiers;
`python -m bench capacity` measures the per-unit costs docs/scaling.md uses; `python -m bench soak`
churns sessions for 10 minutes while sampling every resource (bench/soak.py, docs/reliability.md).
gevent monkey-patches this process only (the load generator holds thousands of
long polls); the service's own processes are started normally by bench/stack.py.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

BENCHMARKS = ("suite", "offer_latency", "offer_timeline", "capacity", "soak")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", default=["suite"], help=f"any of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="smaller numbers, for a smoke run")
    parser.add_argument("--skip-janus", action="store_true")
    parser.add_argument("--only", help="suite: comma-separated scenarios to run (the others are skipped)")
    parser.add_argument("--out", help="suite, soak: directory for the JSON and PNG (default bench/results)")
    parser.add_argument("--duration", type=float, default=600.0, help="soak: seconds of churn")
    parser.add_argument("--rate", type=float, default=0.3, help="soak: sessions started per second")
    parser.add_argument("--sample", type=float, default=30.0, help="soak: seconds between samples")
    parser.add_argument("--warmup", type=float, help="soak: seconds left out of the slopes (default 120)")
    parser.add_argument("--kill-midway", action="store_true", help="soak: SIGKILL a worker and a KMS at half time")
    args = parser.parse_args()
    for name in args.names:
        if name not in BENCHMARKS:
            parser.error(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
        module = __import__(f"bench.{name}", fromlist=["main"])
        if name == "suite":
            only = args.only.split(",") if args.only else None
            if only and set(only) - set(module.SCENARIOS):
                parser.error(f"--only: choose from {', '.join(module.SCENARIOS)}")
            out = {"out": Path(args.out)} if args.out else {}
            module.main(quick=args.quick, skip_janus=args.skip_janus, only=only, **out)
        elif name == "soak":
            out = {"out": Path(args.out)} if args.out else {}
            module.main(args.duration, args.rate, args.sample, args.warmup, args.kill_midway, **out)
        elif name == "capacity":
            module.main(quick=args.quick)
        else:
            module.main()


if __name__ == "__main__":
    main()
