"""Command line: `envelope-gateway serve | dev | check-config`."""
from __future__ import annotations

import argparse
import json
import sys

EXIT_CONFIG_ERROR = 2


def _load(path: str | None):
    """The validated settings, or exit 2 with every problem listed (before anything listens)."""
    from gateway.config import ConfigError, load_settings

    try:
        return load_settings(path)
    except ConfigError as exc:
        print(f"envelope-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None


def _serve(args: argparse.Namespace) -> int:
    import uvloop

    from gateway.observability.logs import configure
    from gateway.server import run

    settings = _load(args.config)
    configure(settings.log_level, settings.log_format, settings.audit_log_file)
    uvloop.run(run(settings))
    return 0


def _dev(args: argparse.Namespace) -> int:
    from gateway import dev

    dev.main(args.port, args.store_port, args.admin_port)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from gateway.config import redacted_dict

    print(json.dumps(redacted_dict(_load(args.config)), indent=2, default=str))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from gateway.bench.loadgen import run

    return run(args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="envelope-gateway",
                                     description="A streaming, envelope-encrypting S3 gateway.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway (production)")
    serve.add_argument("--config", "-c", help="YAML settings file (ENVELOPE_* environment variables override it)")
    serve.set_defaults(func=_serve)

    dev = commands.add_parser("dev", help="run the gateway on an embedded S3 + KMS (moto) for trying it out")
    dev.add_argument("--port", type=int, default=8080, help="S3 port of the gateway (default 8080)")
    dev.add_argument("--store-port", type=int, default=9000, help="port of the embedded S3 + KMS (default 9000)")
    dev.add_argument("--admin-port", type=int, default=9090, help="metrics and health port (default 9090)")
    dev.set_defaults(func=_dev)

    check = commands.add_parser("check-config", help="validate a settings file and print the effective settings")
    check.add_argument("--config", "-c", help="YAML settings file")
    check.set_defaults(func=_check_config)

    bench = commands.add_parser("bench", help="load-test S3 endpoints: direct, a plain proxy and the gateway",
                                description="Load tester (see docs/benchmarks/README.md).")
    from gateway.bench.loadgen import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=_bench)

    args = parser.parse_args(argv)
    raise SystemExit(args.func(args))


if __name__ == "__main__":
    main()
