"""Exit codes of the offline tools (decrypt, wrap, unwrap, share, export-signing-key, rewrap, encrypt-existing),
documented in docs/KEYS.md, and the one place that turns an error into a message on standard error and an exit
code. Messages are the error tree's fixed texts: never a key, a secret or plaintext."""
from __future__ import annotations

import sys
from collections.abc import Callable

from gateway import errors

EXIT_OK = 0
EXIT_INTEGRITY = 1  # tampered, truncated, swapped or mis-named ciphertext (KMS refused the bucket/key context)
EXIT_USAGE = 2  # bad arguments or input files (argparse uses 2 as well), a secret too large for KMS Encrypt
EXIT_UNSUPPORTED = 3  # not encrypted by the gateway, an unknown format version, no usable wrapped key; a partner
# entry that would not fit in the object's 2 KB of metadata
EXIT_UNAVAILABLE = 4  # KMS or the store refused or failed, the object is missing or changed; a local I/O error
EXIT_INCOMPLETE = 5  # a sweep (rewrap) ran to its end but some objects failed: its summary lists them
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C (SIGINT); a sweep's state file says where to resume


def exit_code(exc: errors.S3Error) -> int:
    if isinstance(exc, errors.TamperedCiphertext):
        return EXIT_INTEGRITY
    if isinstance(exc, (errors.InvalidArgument, errors.InvalidRequest)):
        return EXIT_USAGE
    if isinstance(exc, (errors.NotEncrypted, errors.UnsupportedFormat, errors.MetadataTooLarge)):
        return EXIT_UNSUPPORTED
    return EXIT_UNAVAILABLE


def run_tool(command: str, action: Callable[[], int | None]) -> int:
    """Run a tool's action; its failure becomes one line on standard error and the documented exit code. An
    action that finished may return its own exit code (a sweep with failed objects)."""
    try:
        code = action()
    except errors.S3Error as exc:
        prefix = "integrity check failed: " if isinstance(exc, errors.TamperedCiphertext) else ""
        print(f"envelope-gateway {command}: {prefix}{exc.message}", file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:
        print(f"envelope-gateway {command}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK if code is None else code
