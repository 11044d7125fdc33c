"""Command line: `envelope-gateway serve | dev | check-config | bench | decrypt | wrap | unwrap | rewrap`."""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack

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


def _decrypt(args: argparse.Namespace) -> int:
    from gateway.tools import aws, sources
    from gateway.tools.datakey import KmsUnwrapper
    from gateway.tools.decrypt import decrypt_object
    from gateway.tools.exits import run_tool
    from gateway.tools.output import plaintext_output

    def action() -> None:
        unwrappers = [KmsUnwrapper(aws.client("kms", region=args.region, endpoint_url=args.kms_endpoint_url),
                                   args.kms_key_id)]
        with ExitStack() as stack:
            if args.input is None:
                s3 = aws.client("s3", region=args.region, endpoint_url=args.endpoint_url)
                head = sources.head_from_store(s3, args.bucket, args.key)
                body: sources.StoredBody = sources.StoreBody(s3, args.bucket, args.key, head)
            else:
                head = sources.load_head_json(args.metadata)
                body = stack.enter_context(sources.file_body(args.input))
            out = stack.enter_context(plaintext_output(args.out))
            decrypt_object(head, body, args.bucket, args.key, unwrappers, out.write)

    return run_tool("decrypt", action)


def _wrap(args: argparse.Namespace) -> int:
    from gateway.tools import aws, secrets
    from gateway.tools.exits import run_tool

    def action() -> None:
        context = secrets.parse_context(args.context)
        secret = secrets.read_secret(sys.stdin.buffer)
        kms = aws.client("kms", region=args.region, endpoint_url=args.kms_endpoint_url)
        sys.stdout.write(secrets.wrap(kms, args.key_id, context, secret))

    return run_tool("wrap", action)


def _unwrap(args: argparse.Namespace) -> int:
    from gateway.tools import aws, secrets
    from gateway.tools.exits import run_tool

    def action() -> None:
        context = secrets.parse_context(args.context)
        wrapped = sys.stdin.buffer.read(secrets.MAX_WRAPPED_BYTES + 1)
        kms = aws.client("kms", region=args.region, endpoint_url=args.kms_endpoint_url)
        sys.stdout.buffer.write(secrets.unwrap(kms, wrapped, context, args.key_id))
        sys.stdout.buffer.flush()

    return run_tool("unwrap", action)


def _rewrap(args: argparse.Namespace) -> int:
    from gateway.tools import aws
    from gateway.tools.exits import EXIT_INCOMPLETE, EXIT_INTERRUPTED, run_tool
    from gateway.tools.progress import Progress
    from gateway.tools.rewrap import rewrap_bucket

    def action() -> int | None:
        # Workers share the clients; each may run a few part copies of its own at once.
        s3 = aws.client("s3", region=args.region, endpoint_url=args.endpoint_url, connections=5 * args.concurrency)
        kms = aws.client("kms", region=args.region, endpoint_url=args.kms_endpoint_url,
                         connections=args.concurrency)
        progress = Progress()
        try:
            summary = rewrap_bucket(s3, kms, args.bucket, args.to_key, prefix=args.prefix, from_key=args.from_key,
                                    concurrency=args.concurrency, state_file=args.state_file, dry_run=args.dry_run,
                                    on_progress=lambda s: progress.show(s.progress_line()))
        except KeyboardInterrupt:
            progress.done()
            saved = f"; --state-file {args.state_file} says where to resume" if args.state_file else ""
            print(f"envelope-gateway rewrap: interrupted{saved}", file=sys.stderr)
            return EXIT_INTERRUPTED
        progress.show(summary.progress_line(), force=True)
        progress.done()
        sys.stdout.write(json.dumps(summary.as_dict(), indent=1) + "\n" if args.json else summary.text())
        return EXIT_INCOMPLETE if summary.failed else None

    return run_tool("rewrap", action)


_DECRYPT_DESCRIPTION = """\
Decrypt one object without a gateway, with the AWS SDK's default credentials (environment, shared config,
instance or pod role) for KMS Decrypt and, reading from the store, for the store itself. Every byte written has
been authenticated; on any failure the exit code is non-zero and --out FILE is not created (docs/KEYS.md).

From the store:   decrypt --bucket B --key K [--endpoint-url URL] --out FILE
From files:       decrypt --in BODY --metadata head.json --bucket B --key K --out FILE
  where BODY is the stored ciphertext and head.json what `aws s3api head-object --bucket B --key K` prints,
  both taken from the store itself (through the gateway the envelope metadata is hidden and GET decrypts).

--bucket and --key are always needed: each object's data key is wrapped by KMS under an encryption context that
names the bucket and key the object was written under, and KMS refuses any other name.

exit codes: 0 done; 1 integrity failure (tampered, truncated or swapped ciphertext, or the wrong bucket/key);
2 bad arguments or input files; 3 not decryptable by this version (not encrypted by the gateway, unknown format,
no usable wrapped key); 4 KMS, the store or the local system failed (denied, unreachable, missing, changed)."""


_SECRETS_EPILOG = """\
The wrapped form (docs/KEYS.md) records the key and the context names, for reference only: unwrap sends KMS the
--context it is given, which must be exactly the one used to wrap.

exit codes: 0 done; 1 KMS refused to unwrap (another --context or --key-id, or an altered wrapped form);
2 bad arguments or input (a secret of 4096 bytes or more, an empty one, not a wrapped form); 3 an unknown
wrapped-form version; 4 KMS failed (denied, unreachable, unknown key)."""


_REWRAP_DESCRIPTION = """\
Re-wrap the data key of every object under s3://BUCKET/PREFIX to another KMS master key with KMS ReEncrypt, and
rewrite only the objects' metadata with a server-side copy onto themselves: no data is read or re-encrypted, and
each object keeps its bytes, ETag, user metadata, headers and tags (docs/KEYS.md, "Rotating and re-wrapping
master keys"). Runs with the AWS SDK's default credentials, against the store itself (not through a gateway).

Idempotent (entries already under --to-key are left alone, at no KMS cost) and resumable (--state-file). Objects
not written by the gateway are counted and never modified. Progress goes to standard error on a terminal, the
summary to standard output.

exit codes: 0 done, nothing failed; 2 bad arguments, a key that cannot wrap data keys (not symmetric, not
enabled), or a state file of another sweep; 4 KMS or the store failed before the sweep could run (a key not
found, the listing refused); 5 the sweep ran but some objects failed (listed in the summary; run again to retry
them); 130 interrupted."""


def _kms_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="AWS region; default: the SDK chain (AWS_REGION)")
    parser.add_argument("--kms-endpoint-url", metavar="URL",
                        help="KMS endpoint; default: the SDK chain (AWS_ENDPOINT_URL_KMS) or AWS")


def _add_tools(commands: argparse._SubParsersAction) -> None:
    decrypt = commands.add_parser("decrypt", help="decrypt an object without a gateway (KMS credentials alone)",
                                  description=_DECRYPT_DESCRIPTION,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    decrypt.add_argument("--bucket", required=True, help="the bucket the object was written to (KMS context)")
    decrypt.add_argument("--key", required=True, help="the object's key as written (KMS context)")
    decrypt.add_argument("--in", dest="input", metavar="FILE", help="the stored ciphertext, instead of the store")
    decrypt.add_argument("--metadata", metavar="JSON", help="with --in: the object's `aws s3api head-object` output")
    decrypt.add_argument("--endpoint-url", metavar="URL", help="the object store (without --in); default: the SDK "
                                                               "chain (AWS_ENDPOINT_URL_S3) or AWS S3")
    decrypt.add_argument("--out", metavar="FILE", help="where the plaintext goes (default: standard output)")
    decrypt.add_argument("--kms-key-id", metavar="KEY",
                         help="use only data-key copies wrapped by this KMS key (id, ARN or alias): the gateway's "
                              "kms.key_id; default: the key named in the object's metadata")
    _kms_options(decrypt)
    decrypt.set_defaults(func=_decrypt)

    wrap = commands.add_parser("wrap", help="encrypt a small secret (< 4 KiB, standard input) with KMS directly",
                               description="Encrypt a secret of at most 4095 bytes from standard input with KMS "
                                           "Encrypt and print its wrapped form (one line of versioned JSON).",
                               epilog=_SECRETS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    wrap.add_argument("--key-id", required=True, help="the KMS key (id, ARN or alias)")
    wrap.add_argument("--context", action="append", default=[], metavar="NAME=VALUE",
                      help="encryption context entry (repeatable); unwrap must be given the same")
    _kms_options(wrap)
    wrap.set_defaults(func=_wrap)

    unwrap = commands.add_parser("unwrap", help="decrypt a wrapped secret (standard input) to standard output",
                                 description="Decrypt a wrapped form made by `wrap` with KMS Decrypt; the secret "
                                             "goes to standard output only.", epilog=_SECRETS_EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    unwrap.add_argument("--context", action="append", default=[], metavar="NAME=VALUE",
                        help="the encryption context it was wrapped with (repeatable; the wrapped form's own "
                             "record of it is not used)")
    unwrap.add_argument("--key-id", help="accept only this KMS key (id, ARN or alias); default: the one recorded")
    _kms_options(unwrap)
    unwrap.set_defaults(func=_unwrap)

    rewrap = commands.add_parser("rewrap", help="move objects to another KMS key without re-encrypting data",
                                 description=_REWRAP_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    rewrap.add_argument("--bucket", required=True, help="the bucket in the store")
    rewrap.add_argument("--prefix", default="", help="only keys starting with this (default: the whole bucket)")
    rewrap.add_argument("--to-key", required=True, metavar="KEY", help="the new KMS key (id, ARN or alias)")
    rewrap.add_argument("--from-key", metavar="KEY",
                        help="re-wrap only entries under this KMS key (id, ARN or alias); recommended wherever "
                             "others can write to the store. Default: every KMS entry not under --to-key")
    rewrap.add_argument("--concurrency", type=int, default=8, metavar="N", help="objects in flight (default 8)")
    rewrap.add_argument("--state-file", metavar="FILE",
                        help="record progress here and resume from it (JSON; created if missing)")
    rewrap.add_argument("--dry-run", action="store_true",
                        help="count what would be re-wrapped; call no KMS ReEncrypt and write nothing")
    rewrap.add_argument("--json", action="store_true", help="print the summary as JSON")
    rewrap.add_argument("--endpoint-url", metavar="URL",
                        help="the object store; default: the SDK chain (AWS_ENDPOINT_URL_S3) or AWS S3")
    _kms_options(rewrap)
    rewrap.set_defaults(func=_rewrap)


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
    _add_tools(commands)

    args = parser.parse_args(argv)
    if args.command == "decrypt" and (args.input is None) != (args.metadata is None):
        parser.error("decrypt: --in and --metadata go together (or neither, to read from the store)")
    raise SystemExit(args.func(args))


if __name__ == "__main__":
    main()
