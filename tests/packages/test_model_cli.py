"""``medimg model``: the interface the acceptance checks use (keygen, pack --sign-key, verify
--trust exits 0 only for an intact package signed by that key), show and encryption."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from medimg.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_hand_over_in_commands(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("MEDIMG_TRUST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    code, out, _ = _run(capsys, "model", "keygen", tmp_path / "keys")
    assert code == 0
    private = tmp_path / "keys" / "medimg-signing.pem"
    public = next(p for p in (tmp_path / "keys").iterdir() if "pub" in p.name)
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    fingerprint = out.split("fingerprint")[1].split()[0]

    package = tmp_path / "liver.medimg"
    code, out, _ = _run(capsys, "model", "pack", run_dir, package, "--sign-key", private)
    assert code == 0
    assert f"signed by  {fingerprint}" in out

    code, out, err = _run(capsys, "model", "verify", package, "--trust", public)
    assert (code, err) == (0, "")
    assert f"signature  signed by {fingerprint} (trusted)" in out
    code, out, _ = _run(capsys, "model", "verify", package)  # no store: says so
    assert code == 0
    assert f"signed by {fingerprint}, not checked against a trust store" in out

    code, out, _ = _run(capsys, "model", "show", package)
    assert code == 0
    assert out.startswith("# liver 1\n")
    assert "## contract.json" in out
    assert '"spacing_mm": [\n    1.0,\n    1.0,\n    2.5\n  ]' in out

    # another signer's key, an unsigned package: refused with --trust
    _run(capsys, "model", "keygen", tmp_path / "other")
    code, _, err = _run(capsys, "model", "verify", package, "--trust",
                        tmp_path / "other" / "medimg-signing.pub.pem")  # fmt: skip
    assert code == 2
    assert "not in the trust store" in err
    unsigned = tmp_path / "unsigned.medimg"
    assert _run(capsys, "model", "pack", run_dir, unsigned)[0] == 0
    code, out, _ = _run(capsys, "model", "verify", unsigned)
    assert code == 0
    assert "signature  unsigned" in out
    assert _run(capsys, "model", "verify", unsigned, "--trust", public)[0] == 2


def test_encrypted_pack_and_verify(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "passphrase.txt"
    secret.write_text("s3cret words\n")
    package = tmp_path / "locked.medimg"
    code, out, _ = _run(capsys, "model", "pack", run_dir, package, "--encrypt",
                        "--passphrase-file", secret, "--name", "locked", "--model-version", "3")  # fmt: skip
    assert code == 0
    assert "encrypted  yes" in out
    code, out, _ = _run(capsys, "model", "verify", package)
    assert code == 0
    assert "encrypted  yes (passphrase not checked)" in out
    assert "model      locked 3 (segmentation)" in out
    code, out, _ = _run(capsys, "model", "verify", package, "--passphrase-file", secret)
    assert code == 0
    assert "encrypted  yes (passphrase checked)" in out
    assert b"s3cret" not in package.read_bytes()
    assert _run(capsys, "model", "pack", run_dir, package)[0] == 2  # exists, no --force
    assert _run(capsys, "model", "pack", run_dir, package, "--force")[0] == 0


def test_group_without_command_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "model")
    assert code == 2
    assert "keygen" in out
    assert "verify" in out
