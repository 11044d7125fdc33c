"""Run `envelope-gateway <args>` under cProfile (the event-loop thread) and write the stats when it exits.

    python -m gateway.bench.profiled --out gateway.prof -- serve --config gateway.yaml

For benchmarks only (`envelope-gateway bench --profile-gateway`). Profiling is off until SIGUSR1 and off again
at SIGUSR2, so the harness profiles its measurement phases only, not start-up (imports) or idle time. cProfile
slows the loop thread down, so a profiled run's throughput is not a measurement; its breakdown is. The crypto
pool's threads are not profiled (their time is native AES-GCM and hashing, outside the GIL); the report's
per-thread CPU split covers them.
"""
from __future__ import annotations

import argparse
import cProfile
import signal


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where to write the pstats file")
    parser.add_argument("--always", action="store_true", help="profile from start to exit (no signals)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then the envelope-gateway arguments")
    args = parser.parse_args(argv)
    rest = args.args[1:] if args.args[:1] == ["--"] else args.args

    from gateway.cli import main as gateway_main

    profile = cProfile.Profile()
    if args.always:
        profile.enable()
    else:
        # Handlers run in the main thread — the event loop's — which is the thread cProfile hooks.
        signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
        signal.signal(signal.SIGUSR2, lambda *_: profile.disable())
    try:
        gateway_main(rest)
    except SystemExit:
        pass
    finally:
        profile.disable()
        profile.dump_stats(args.out)


if __name__ == "__main__":
    main()
