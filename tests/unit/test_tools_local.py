"""The offline tools' local pieces: the output that appears only when complete, and the exit codes."""
from __future__ import annotations

import pytest

from gateway import errors
from gateway.tools.exits import EXIT_INTEGRITY, EXIT_UNAVAILABLE, EXIT_UNSUPPORTED, EXIT_USAGE, exit_code
from gateway.tools.output import plaintext_output


def test_output_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"earlier")
    with pytest.raises(errors.TamperedCiphertext):
        with plaintext_output(str(target)) as out:
            out.write(b"a true prefix")
            raise errors.TamperedCiphertext()
    assert target.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # no temporary file left behind
    with plaintext_output(str(target)) as out:
        out.write(b"whole")
    assert target.read_bytes() == b"whole"
    assert target.stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_output_in_a_missing_directory_is_a_usage_error(tmp_path):
    with pytest.raises(errors.InvalidArgument, match="--out"):
        with plaintext_output(str(tmp_path / "nope" / "out.bin")):
            pass


def test_exit_codes():
    assert exit_code(errors.TamperedCiphertext()) == EXIT_INTEGRITY == 1
    assert exit_code(errors.InvalidArgument()) == EXIT_USAGE == 2
    assert exit_code(errors.NotEncrypted()) == exit_code(errors.UnsupportedFormat()) == EXIT_UNSUPPORTED == 3
    for error in (errors.KMSError(), errors.KMSAccessDenied(), errors.NoSuchKey(), errors.UpstreamError(),
                  errors.SlowDown()):
        assert exit_code(error) == EXIT_UNAVAILABLE == 4
