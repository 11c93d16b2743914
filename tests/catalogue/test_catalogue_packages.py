"""Bad model packages and bad ``medimg model`` arguments: each refused naming the package and
the member, exit 2, before any weight is deserialised.

A pristine signed package (and an encrypted one) is made once, from a tiny seeded model
folder; each entry copies it and changes one thing, rewriting the zip the way medimg writes
it (same dates, methods and order) so that only the check under test can fire.
"""

from __future__ import annotations

import json
import shutil
import stat
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from catalogue_helpers import BadInput, check_bad_input, untrained_model

from medimg.packages import generate_keypair, pack_model
from medimg.packages._format import ZIP_DATE, canonical_json

_Entries = list[tuple[zipfile.ZipInfo, bytes]]


_PRISTINE: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _pristine_packages(tmp_path_factory: pytest.TempPathFactory) -> None:
    _PRISTINE.append(_build(tmp_path_factory.mktemp("pristine")))


def _pristine() -> Path:
    return _PRISTINE[-1]


def _build(root: Path) -> Path:
    """A folder with run/, keys alice/ and bob/, signed.medimg, plain.medimg, locked.medimg."""
    from medimg.transforms import PreprocessConfig

    untrained_model(root / "run", preprocess=PreprocessConfig(target_spacing_mm=(1, 1, 2.5)))
    alice = generate_keypair(root / "alice")
    generate_keypair(root / "bob")
    pack_model(root / "run", root / "signed.medimg", sign_key=alice.private)
    pack_model(root / "run", root / "plain.medimg")
    pack_model(root / "run", root / "locked.medimg", passphrase="right one")
    return root


def _copy(tmp: Path) -> Path:
    """The pristine folder's contents under ``tmp/p`` (each entry gets its own copy)."""
    target = tmp / "p"
    if not target.exists():
        shutil.copytree(_pristine(), target)
    return target


def _entries(path: Path) -> _Entries:
    with zipfile.ZipFile(path) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def _write(path: Path, entries: _Entries) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(path, "w") as archive:
            for info, data in entries:
                archive.writestr(info, data)


def _info(name: str, method: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = method
    info.external_attr = 0o100644 << 16
    return info


def _tampered(
    edit: Callable[[_Entries], _Entries], *, base: str = "signed", trust: bool = True
) -> Callable[[Path], Sequence[str]]:
    """``medimg model verify`` of the package ``base`` after ``edit`` changed its entries."""

    def make(tmp: Path) -> Sequence[str]:
        root = _copy(tmp)
        path = root / f"{base}.medimg"
        _write(path, edit(_entries(path)))
        argv = ["model", "verify", str(path)]
        return [*argv, "--trust", str(root / "alice" / "medimg-signing.pub.pem")] if trust else argv

    return make


def _drop(name: str) -> Callable[[_Entries], _Entries]:
    return lambda entries: [(i, d) for i, d in entries if i.filename != name]


def _add(info: zipfile.ZipInfo, data: bytes) -> Callable[[_Entries], _Entries]:
    return lambda entries: [*entries, (info, data)]


def _flip_weights(entries: _Entries) -> _Entries:
    out = []
    for info, data in entries:
        if info.filename == "weights.safetensors":
            data = data[:-1] + bytes([data[-1] ^ 0x01])
        out.append((info, data))
    return out


def _edit_manifest(change: Callable[[dict[str, object]], None]) -> Callable[[_Entries], _Entries]:
    def edit(entries: _Entries) -> _Entries:
        out = []
        for info, data in entries:
            if info.filename == "MANIFEST.json":
                manifest = json.loads(data)
                change(manifest)
                data = canonical_json(manifest)
            out.append((info, data))
        return out

    return edit


def _future(manifest: dict[str, object]) -> None:
    manifest["format_version"] = 99
    manifest["made_by"] = {"medimg": "9.0"}


def _symlink(entries: _Entries) -> _Entries:
    info = _info("evaluation/link.png", zipfile.ZIP_STORED)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return [*entries, (info, b"/etc/passwd")]


def _rezip(entries: _Entries) -> _Entries:
    """Same names and bytes, re-zipped by another tool (today's date, every member deflated)."""
    return [(zipfile.ZipInfo(i.filename, date_time=(2024, 5, 1, 12, 0, 0)), d) for i, d in entries]


def _recompress(entries: _Entries) -> _Entries:
    out = []
    for info, data in entries:
        fresh = _info(info.filename, zipfile.ZIP_DEFLATED)
        out.append((fresh, data))
    return out


def _file(name: str, content: bytes, *argv: str) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        path = tmp / name
        path.write_bytes(content)
        return [a.replace("@", str(path)) for a in argv]

    return make


def _truncated(tmp: Path) -> Sequence[str]:
    path = _copy(tmp) / "signed.medimg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return ["model", "verify", str(path)]


def _cmd(*argv: str) -> Callable[[Path], Sequence[str]]:
    """``argv`` with ``{p}`` standing for the copied pristine folder."""

    def make(tmp: Path) -> Sequence[str]:
        root = _copy(tmp)
        (tmp / "wrong.txt").write_text("wrong one\n")
        (tmp / "empty.txt").write_text("\n")
        return [a.replace("{p}", str(root)).replace("{t}", str(tmp)) for a in argv]

    return make


_PKG = r"{tmp}/p/signed\.medimg"
_FIX = r"get the package again"

CATALOGUE = [
    BadInput("package_missing_member", _tampered(_drop("card.md")), 2,
             rf"error: {_PKG}: member 'card\.md' listed in MANIFEST\.json is missing; {_FIX}"),
    BadInput("package_extra_member", _tampered(_add(_info("notes.txt"), b"hi")), 2,
             rf"error: {_PKG}: member 'notes\.txt' is not listed in MANIFEST\.json"),
    BadInput("package_hash_mismatch", _tampered(_flip_weights), 2,
             rf"error: {_PKG}: member 'weights\.safetensors' has SHA-256 [0-9a-f]{{64}} "
             r"\(\d+ bytes\), MANIFEST\.json records [0-9a-f]{64} \(\d+ bytes\): it was altered"),
    BadInput("package_manifest_changed_after_signing",
             _tampered(_edit_manifest(lambda m: m.update(name="better"))), 2,
             rf"error: {_PKG}: member 'SIGNATURE' does not verify: MANIFEST\.json is not what "
             r"key ed25519:[0-9a-f]{32} signed"),
    BadInput("package_signed_by_untrusted_key",
             _cmd("model", "verify", "{p}/signed.medimg", "--trust",
                  "{p}/bob/medimg-signing.pub.pem"), 2,
             rf"error: {_PKG}: member 'SIGNATURE' is by key ed25519:[0-9a-f]{{32}}, which is "
             r"not in the trust store \(trusted: ed25519:[0-9a-f]{32} \({tmp}/p/bob/"),
    BadInput("package_unsigned_when_required",
             _cmd("model", "verify", "{p}/plain.medimg", "--trust", "{p}/alice"), 2,
             r"error: {tmp}/p/plain\.medimg: is unsigned \(no member 'SIGNATURE'\), but a trust "
             r"store is configured \(1 key\)"),
    BadInput("package_signature_member_missing", _tampered(_drop("SIGNATURE"), trust=False), 2,
             rf"error: {_PKG}: member 'SIGNATURE' is missing, but MANIFEST\.json says it is "
             r"signed by ed25519:"),
    BadInput("package_unknown_format_version",
             _tampered(_edit_manifest(_future), base="plain", trust=False), 2,
             r"error: {tmp}/p/plain\.medimg: member 'MANIFEST\.json': made by medimg 9\.0 with "
             r"package format 99; this medimg \S+ reads formats 1: upgrade medimg"),
    BadInput("package_manifest_missing", _tampered(_drop("MANIFEST.json"), trust=False), 2,
             rf"error: {_PKG}: member 'MANIFEST\.json' is missing: not a medimg package"),
    BadInput("package_wrong_passphrase",
             _cmd("model", "verify", "{p}/locked.medimg", "--passphrase-file", "{t}/wrong.txt"),
             2, r"error: wrong passphrase for {tmp}/p/locked\.medimg \(member "
             r"'weights\.safetensors' does not decrypt"),
    BadInput("package_empty_passphrase_file",
             _cmd("model", "verify", "{p}/locked.medimg", "--passphrase-file", "{t}/empty.txt"),
             2, r"error: passphrase file {tmp}/empty\.txt: its first line is empty"),
    BadInput("package_member_outside", _tampered(_add(_info("../evil.txt"), b"x")), 2,
             rf"error: {_PKG}: member '\.\./evil\.txt' points outside the package"),
    BadInput("package_member_absolute", _tampered(_add(_info("/tmp/evil.txt"), b"x")), 2,
             rf"error: {_PKG}: member '/tmp/evil\.txt' has an absolute path, outside the package"),
    BadInput("package_member_symlink", _tampered(_symlink), 2,
             rf"error: {_PKG}: member 'evaluation/link\.png' is a symbolic link"),
    BadInput("package_member_twice",
             _tampered(lambda e: [*e, (_info("card.md"), b"# another card")]), 2,
             rf"error: {_PKG}: member 'card\.md' appears twice"),
    BadInput("package_member_odd_name", _tampered(_add(_info("notes .txt"), b"x")), 2,
             rf"error: {_PKG}: member 'notes \.txt' is not a member name a package holds"),
    BadInput("package_zip_bomb", _tampered(_add(_info("evaluation/zeros.csv"), bytes(8 << 20))),
             2, rf"error: {_PKG}: member 'evaluation/zeros\.csv' inflates \d+-fold \(at most "
             r"200-fold is accepted"),
    BadInput("package_truncated", _truncated, 2,
             rf"error: {_PKG}: not a medimg package: not a complete zip archive .*truncated"),
    BadInput("package_rezipped", _tampered(_rezip), 2,
             rf"error: {_PKG}: member 'MANIFEST\.json' carries zip metadata medimg never "
             r"writes .*re-zipped or edited by another tool"),
    BadInput("package_recompressed", _tampered(_recompress), 2,
             rf"error: {_PKG}: member 'weights\.safetensors' carries zip metadata"),
    BadInput("package_not_a_zip", _file("model.medimg", b"model weights\n", "model", "show", "@"),
             2, r"error: {tmp}/model\.medimg: not a medimg package: not a complete zip archive"),
    BadInput("package_is_a_folder", _cmd("model", "verify", "{p}/run"), 2,
             r"error: package {tmp}/p/run is a folder; give a \.medimg file"),
    BadInput("trust_file_missing",
             _cmd("model", "verify", "{p}/signed.medimg", "--trust", "{p}/carol.pub.pem"), 2,
             r"error: trust store \(--trust\): {tmp}/p/carol\.pub\.pem does not exist"),
    BadInput("trust_private_key",
             _cmd("model", "verify", "{p}/signed.medimg", "--trust",
                  "{p}/alice/medimg-signing.pem"), 2,
             r"error: {tmp}/p/alice/medimg-signing\.pem: not a PEM public key \(this is a "
             r"private key: trust its \.pub\.pem\)"),
    BadInput("pack_wrong_suffix", _cmd("model", "pack", "{p}/run", "{t}/model.zip"), 2,
             r"error: package {tmp}/model\.zip must end in \.medimg, got \.zip; name it "
             r"model\.medimg"),
    BadInput("pack_not_a_run", _cmd("model", "pack", "{t}", "{t}/m.medimg"), 2,
             r"error: model folder must hold model\.json, got none in {tmp}; train first"),
    BadInput("pack_a_package", _cmd("model", "pack", "{p}/plain.medimg", "{t}/m.medimg"), 2,
             r"error: {tmp}/p/plain\.medimg is already a package; give the run folder"),
    BadInput("pack_exists", _cmd("model", "pack", "{p}/run", "{p}/plain.medimg"), 2,
             r"error: {tmp}/p/plain\.medimg: exists; pass overwrite=True \(--force\)"),
    BadInput("pack_sign_with_public_key",
             _cmd("model", "pack", "{p}/run", "{t}/m.medimg", "--sign-key",
                  "{p}/alice/medimg-signing.pub.pem"), 2,
             r"error: {tmp}/p/alice/medimg-signing\.pub\.pem: not an unencrypted PEM private "
             r"key \(this is a public key\)"),
    BadInput("pack_passphrase_without_encrypt",
             _cmd("model", "pack", "{p}/run", "{t}/m.medimg", "--passphrase-file",
                  "{t}/wrong.txt"), 2,
             r"error: --passphrase-file is only used with --encrypt; add --encrypt or drop it"),
    BadInput("pack_encrypt_without_passphrase",
             _cmd("model", "pack", "{p}/run", "{t}/m.medimg", "--encrypt"), 2,
             r"error: --encrypt needs a passphrase: give --passphrase-file F, set "
             r"MEDIMG_PASSPHRASE_FILE=F"),
    BadInput("keygen_existing", _cmd("model", "keygen", "{p}/alice"), 2,
             r"error: {tmp}/p/alice/medimg-signing\.pem: exists; a signing key is never "
             r"overwritten"),
]  # fmt: skip


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.kind)
def test_bad_package_input(
    entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for name in ("MEDIMG_TRUST", "MEDIMG_PASSPHRASE_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.config/medimg/trust
    check_bad_input(entry, tmp_path, capsys)


def test_kinds_are_unique() -> None:
    kinds = [entry.kind for entry in CATALOGUE]
    assert len(kinds) == len(set(kinds))
