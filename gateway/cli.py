"""Command line: `envelope-gateway serve | dev | check-config | bench | decrypt | wrap | unwrap | share |
export-signing-key | rewrap | encrypt-existing`."""
from __future__ import annotations

import argparse
import json
import os
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
    from gateway.tools import aws, keyfiles, sources
    from gateway.tools.datakey import KmsUnwrapper, PartnerUnwrapper, Unwrapper
    from gateway.tools.decrypt import decrypt_object
    from gateway.tools.exits import run_tool
    from gateway.tools.output import plaintext_output
    from gateway.tools.verify import verified_entry

    def action() -> None:
        unwrappers: list[Unwrapper]
        if args.private_key is not None:  # a partner: no KMS at all
            private_key = keyfiles.load_private_key(args.private_key)
            unwrappers = [PartnerUnwrapper(private_key)]
        else:
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
            if args.verify_key is not None:
                # Before any output exists: a share that does not verify writes nothing (FORMAT.md §17.7).
                entry = verified_entry(head, body, args.bucket, args.key, keyfiles.load_manifest(args.manifest),
                                       keyfiles.load_signer_key(args.verify_key), private_key)
                unwrappers = [PartnerUnwrapper(private_key, only=entry)]
            out = stack.enter_context(plaintext_output(args.out))
            decrypt_object(head, body, args.bucket, args.key, unwrappers, out.write)

    return run_tool("decrypt", action)


def _share(args: argparse.Namespace) -> int:
    from gateway.format.signedshare import Manifest
    from gateway.tools import aws, keyfiles, share
    from gateway.tools.datakey import KmsUnwrapper
    from gateway.tools.exits import run_tool

    def action() -> None:
        recipient = keyfiles.load_recipient(args.recipient)
        s3 = aws.client("s3", region=args.region, endpoint_url=args.endpoint_url)
        keys = iter([args.key]) if args.key is not None else share.keys_under(s3, args.bucket, args.prefix)
        if args.revoke:
            share.revoke(s3, recipient, args.bucket, keys, skip_unencrypted=args.key is None)
            return
        kms = aws.client("kms", region=args.region, endpoint_url=args.kms_endpoint_url)
        signer = None if args.signing_key_id is None else share.KmsSigner(kms, args.signing_key_id)
        records = share.share(s3, KmsUnwrapper(kms, args.kms_key_id), recipient, args.bucket, keys,
                              skip_unencrypted=args.key is None, signer=signer, with_records=args.manifest is not None)
        if args.manifest is not None:
            keyfiles.write_manifest(args.manifest, Manifest(recipient.key_id, signer and signer.signer(),
                                                            tuple(records)))

    return run_tool("share", action)


def _export_signing_key(args: argparse.Namespace) -> int:
    from gateway.tools import aws
    from gateway.tools.exits import run_tool
    from gateway.tools.output import plaintext_output
    from gateway.tools.share import KmsSigner

    def action() -> None:
        signer = KmsSigner(aws.client("kms", region=args.region, endpoint_url=args.kms_endpoint_url), args.key_id)
        with plaintext_output(args.out) as out:
            out.write(signer.public_pem().encode("ascii"))
        print(f"{signer.arn}: {signer.public_key.algorithm}, key id {signer.public_key.key_id}", file=sys.stderr)

    return run_tool("export-signing-key", action)


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


def _encrypt_existing(args: argparse.Namespace) -> int:
    from pathlib import Path

    from botocore.config import Config

    from gateway import errors
    from gateway.tools import aws
    from gateway.tools.encrypt_existing import Options, encrypt_existing
    from gateway.tools.exits import run_tool

    def action() -> None:
        options = Options(args.bucket, args.kms_key_id, args.prefix, args.concurrency, args.part_size,
                          Path(args.state_file) if args.state_file else None, args.dry_run)
        # Every body is in memory with its Content-MD5 (see encrypt_existing): no SDK checksum on top, which some
        # stores refuse to combine across the parts of an upload.
        s3 = aws.client("s3", region=args.region, endpoint_url=args.endpoint_url,
                        config=Config(request_checksum_calculation="when_required"))
        kms = aws.client("kms", region=args.region, endpoint_url=args.kms_endpoint_url)
        summary = encrypt_existing(s3, kms, options)
        print(json.dumps(summary.as_dict(options), ensure_ascii=False))
        if summary.interrupted:
            raise errors.UpstreamError("Interrupted: run again (with the same --state-file to continue there).")
        if summary.failed:
            raise errors.UpstreamError(f"{summary.failed} objects were not encrypted (listed above); run again.")

    return run_tool("encrypt-existing", action)


_ENCRYPT_EXISTING_DESCRIPTION = """\
Encrypt in place the objects of a bucket that were written around the gateway (no envelope metadata), with the
AWS SDK's default credentials for the store and KMS. Each object is read once, encrypted exactly as the gateway
encrypts (one KMS GenerateDataKey per object, under the gateway's --kms-key-id) and written back under the same
key, only if it is still the object that was read (If-Match). User metadata, Content-Type and the other content
headers, the storage class and tags are kept. Objects up to --part-size go back in one PutObject, larger ones as
a multipart upload in parts of that size; a failure leaves the plaintext object as it was. Objects that already
have envelope metadata are skipped, so running it again is safe and cheap. A JSON summary goes to standard
output; see docs/KEYS.md, "Migrating existing plaintext buckets".

exit codes: 0 done; 2 bad arguments or state file; 4 some objects were not encrypted (listed on standard error),
the run was interrupted, or KMS or the store failed: run it again."""


def _byte_size(text: str) -> int:
    """A size in bytes: a number, optionally with KiB, MiB or GiB (binary units)."""
    units = {"kib": 1024, "mib": 1024**2, "gib": 1024**3}
    lowered = text.strip().lower()
    for suffix, factor in units.items():
        if lowered.endswith(suffix) and lowered[:-len(suffix)].strip().isdigit():
            return int(lowered[:-len(suffix)]) * factor
    if lowered.isdigit():
        return int(lowered)
    raise argparse.ArgumentTypeError(f"not a size in bytes (e.g. 8MiB): {text!r}")


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

A partner (an object shared with `envelope-gateway share`) adds --private-key partner-key.pem and needs no KMS;
with a signed share also --verify-key signer.pem --manifest share.json: the signature is verified over what was
downloaded before anything is decrypted. An encrypted private key's passphrase comes from
ENVELOPE_PRIVATE_KEY_PASSPHRASE, or is asked for on the terminal.

exit codes: 0 done; 1 integrity failure (tampered, truncated or swapped ciphertext, the wrong bucket/key, or a
share signature that is missing or does not verify);
2 bad arguments or input files; 3 not decryptable by this version (not encrypted by the gateway, unknown format,
no usable wrapped key); 4 KMS, the store or the local system failed (denied, unreachable, missing, changed)."""


_SECRETS_EPILOG = """\
The wrapped form (docs/KEYS.md) records the key and the context names, for reference only: unwrap sends KMS the
--context it is given, which must be exactly the one used to wrap.

exit codes: 0 done; 1 KMS refused to unwrap (another --context or --key-id, or an altered wrapped form);
2 bad arguments or input (a secret of 4096 bytes or more, an empty one, not a wrapped form); 3 an unknown
wrapped-form version; 4 KMS failed (denied, unreachable, unknown key)."""


_SHARE_DESCRIPTION = """\
Give a partner the data keys of objects written through the gateway, wrapped for their RSA public key
(RSA-OAEP SHA-256, 2048 to 4096 bits), as one more entry in each object's metadata (FORMAT.md §17). Needs KMS
Decrypt on the gateway's key and s3:GetObject/PutObject/ListBucket on the store; no gateway. Sharing again with
the same partner changes nothing; --revoke removes the partner's entries. The partner then runs
`envelope-gateway decrypt --private-key` offline.

With --signing-key-id (a KMS key with key usage SIGN_VERIFY: RSA, or ECC_NIST_P256), every object is signed
with KMS Sign, and the signatures go into the --manifest file that you hand to the partner with
`export-signing-key`'s public key.

exit codes: 0 done; 1 integrity failure (the object's data key does not match its header, or KMS refused its
context); 2 bad arguments or key files (not RSA, under 2048 or over 4096 bits); 3 this object cannot be shared
(not written through the gateway, no usable KMS copy, or its metadata would exceed S3's 2 KB); 4 KMS or the store
refused or failed."""


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


def _kms_key_id_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kms-key-id", metavar="KEY",
                        help="use only data-key copies wrapped by this KMS key (id, ARN or alias): the gateway's "
                             "kms.key_id; recommended. Default: the key named in the object's metadata")


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
    _kms_key_id_option(decrypt)
    decrypt.add_argument("--private-key", metavar="PEM", help="a partner's RSA private key: use the copy shared "
                                                              "with it, offline (no KMS)")
    decrypt.add_argument("--verify-key", metavar="PEM", help="with --private-key: the owner's signing public key "
                                                             "(export-signing-key); verify before decrypting")
    decrypt.add_argument("--manifest", metavar="JSON", help="with --verify-key: the share manifest holding the "
                                                            "signatures")
    _kms_options(decrypt)
    decrypt.set_defaults(func=_decrypt)

    share = commands.add_parser("share", help="share objects with a partner's RSA key (no gateway needed)",
                                description=_SHARE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    share.add_argument("--bucket", required=True)
    which = share.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", help="one object")
    which.add_argument("--prefix", help="every object under this prefix (others than the gateway's are skipped)")
    share.add_argument("--recipient", required=True, metavar="PEM", help="the partner's RSA public key")
    share.add_argument("--revoke", action="store_true", help="remove the partner's entries instead (needs no KMS; "
                                                             "a partner keeps data keys already unwrapped)")
    share.add_argument("--signing-key-id", metavar="KEY", default=os.environ.get("ENVELOPE_SHARE_SIGNING_KEY_ID"),
                       help="sign each share with this KMS asymmetric key (needs --manifest); default: "
                            "ENVELOPE_SHARE_SIGNING_KEY_ID")
    share.add_argument("--manifest", metavar="FILE", help="write the share manifest (what was shared and the "
                                                          "signatures) to FILE, for the partner")
    _kms_key_id_option(share)
    share.add_argument("--endpoint-url", metavar="URL", help="the object store; default: the SDK chain")
    _kms_options(share)
    share.set_defaults(func=_share)

    export = commands.add_parser("export-signing-key", help="print the public key of a KMS signing key (PEM)",
                                 description="Export the public key of the KMS asymmetric key that signs shares, "
                                             "as PEM, for partners' `decrypt --verify-key`. Its key id goes to "
                                             "standard error: tell it to the partner by another channel.")
    export.add_argument("--key-id", required=True, help="the KMS signing key (id, ARN or alias)")
    export.add_argument("--out", metavar="FILE", help="where the PEM goes (default: standard output)")
    _kms_options(export)
    export.set_defaults(func=_export_signing_key)

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

    from gateway.tools.encrypt_existing import DEFAULT_CONCURRENCY, DEFAULT_PART_BYTES

    existing = commands.add_parser("encrypt-existing", help="encrypt in place the objects of a bucket written "
                                                            "around the gateway (migration)",
                                   description=_ENCRYPT_EXISTING_DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    existing.add_argument("--bucket", required=True, help="the bucket to encrypt")
    existing.add_argument("--kms-key-id", required=True, metavar="KEY",
                          help="the KMS key that wraps the data keys: the gateway's kms.key_id (id, ARN or alias)")
    existing.add_argument("--prefix", default="", help="only keys starting with this")
    existing.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N",
                          help=f"objects encrypted at once (default {DEFAULT_CONCURRENCY}); memory is about "
                               "--part-size per object")
    existing.add_argument("--part-size", type=_byte_size, default=DEFAULT_PART_BYTES, metavar="BYTES",
                          help="objects up to this size are written with one PutObject, larger ones in parts of "
                               "this size (5MiB .. 5GiB; default 8MiB)")
    existing.add_argument("--state-file", metavar="FILE",
                          help="progress, so that an interrupted run continues where it stopped (removed when "
                               "a run finishes)")
    existing.add_argument("--dry-run", action="store_true", help="list what would be encrypted; write nothing")
    existing.add_argument("--endpoint-url", metavar="URL",
                          help="the object store; default: the SDK chain (AWS_ENDPOINT_URL_S3) or AWS S3")
    _kms_options(existing)
    existing.set_defaults(func=_encrypt_existing)


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
    if args.command == "decrypt":
        if (args.input is None) != (args.metadata is None):
            parser.error("decrypt: --in and --metadata go together (or neither, to read from the store)")
        if (args.verify_key is None) != (args.manifest is None):
            parser.error("decrypt: --verify-key and --manifest go together")
        if args.verify_key is not None and args.private_key is None:
            parser.error("decrypt: --verify-key verifies partner shares: it needs --private-key")
        if args.private_key is not None and args.kms_key_id is not None:
            parser.error("decrypt: --private-key and --kms-key-id exclude each other")
    if args.command == "share" and args.revoke and args.manifest is not None:
        parser.error("share: --revoke writes no manifest")
    if args.command == "share" and not args.revoke and args.signing_key_id is not None and args.manifest is None:
        parser.error("share: a signing key needs --manifest FILE, where the signatures go")
    raise SystemExit(args.func(args))


if __name__ == "__main__":
    main()
