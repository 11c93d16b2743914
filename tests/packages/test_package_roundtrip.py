"""Round trips of model packages: unsigned, signed, encrypted; what a package holds."""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from medimg.errors import (
    ConfigError,
    OutputExistsError,
    PackageError,
    PackagePassphraseError,
    PackageSignatureError,
)
from medimg.packages import (
    KeyPair,
    is_package,
    pack_model,
    read_package,
)
from medimg.training import load_checkpoint


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "model" / "best.pt")["model"]  # type: ignore[no-any-return]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_unsigned_round_trip_holds_every_member(run_dir: Path, tmp_path: Path) -> None:
    path = pack_model(run_dir, tmp_path / "liver.medimg", name="liver", version="2.1")
    assert is_package(path)
    assert not is_package(run_dir)
    assert not is_package(run_dir / "model")
    package = read_package(path, trust=[])
    assert _same(package.state_dict(), _weights(run_dir))
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert names == ["MANIFEST.json", "model.json", "weights.safetensors", "contract.json",
                     "card.md", "evaluation/training_curves.png", "evaluation/cases.csv",
                     "evaluation/summary.json"]  # fmt: skip
    assert (package.signed_by, package.trusted, package.encrypted) == (None, False, False)
    assert package.record["checkpoint"] == "weights.safetensors"
    assert package.manifest["name"] == "liver"
    assert package.manifest["version"] == "2.1"
    assert package.manifest["format_version"] == 1
    assert package.manifest["made_by"]["torch"] == torch.__version__
    assert (
        package.manifest["source"]["checkpoint_sha256"]
        == json.loads((run_dir / "model" / "model.json").read_text())["checkpoint_sha256"]
    )
    assert package.fingerprint_json is None
    assert package.onnx_bytes() is None
    # the trained-at grid and the inference defaults of the run
    assert package.contract == {
        "task": "segmentation", "modality": "CT", "channels": 1, "spatial_dims": 3,
        "outputs": {"1": "liver", "2": "spleen"}, "orientation": "RAS",
        "spacing_mm": [1.0, 1.0, 2.5],
        "inference": {"roi_size_vox": [16, 16, 8], "sw_overlap": 0.25, "mirror_axes": [0, 1],
                      "precision": "float32"},
    }  # fmt: skip
    assert "| 1 | liver |" in package.card
    assert "1 x 1 x 2.5 mm, RAS" in package.card
    assert "| mean_dice | 0.875 |" in package.card
    assert package.member_bytes("evaluation/cases.csv") == b"case,dice\na,0.875\n"
    with pytest.raises(PackageError, match=r"liver\.medimg: has no member 'nope'"):
        package.member_bytes("nope")


def test_model_folder_packs_like_its_run_folder(run_dir: Path, tmp_path: Path) -> None:
    package = read_package(pack_model(run_dir / "model", tmp_path / "m.medimg"), trust=[])
    # a model folder called model/ is a run's: its evaluation is the run's
    assert "evaluation/summary.json" in [m["name"] for m in package.manifest["members"]]
    assert _same(package.state_dict(), _weights(run_dir))


def test_classification_packs_with_its_head(make_run: Callable[..., Path], tmp_path: Path) -> None:
    run = make_run(tmp_path / "cls", task="classification")
    package = read_package(pack_model(run, tmp_path / "cls.medimg"), trust=[])
    assert package.contract["task"] == "classification"
    assert package.contract["head"] == {"multi_label": False, "input_size_vox": [16, 16, 16]}
    assert package.record["head"] == package.contract["head"]
    assert "## Classes" in package.card
    assert "| 1 | nodule |" in package.card
    assert _same(package.state_dict(), _weights(run))


def test_signed_round_trip_and_trust_sources(
    run_dir: Path, tmp_path: Path, keys: Callable[[str], KeyPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = keys("alice"), keys("bob")
    path = pack_model(run_dir, tmp_path / "s.medimg", sign_key=alice.private)
    package = read_package(path, trust=[alice.public])
    assert (package.signed_by, package.trusted) == (alice.fingerprint, True)
    assert _same(package.state_dict(), _weights(run_dir))
    assert read_package(path, trust=[]).signed_by == alice.fingerprint  # consistency only
    assert read_package(path, trust=[bob.public, alice.public.parent]).trusted  # a folder
    with pytest.raises(PackageSignatureError, match=r"not in the trust store"):
        read_package(path, trust=[bob.public])
    monkeypatch.setenv("MEDIMG_TRUST", f"{bob.public}{os.pathsep}{alice.public}")
    assert read_package(path).trusted
    monkeypatch.setenv("MEDIMG_TRUST", str(bob.public))
    with pytest.raises(PackageSignatureError, match=rf"trusted: {bob.fingerprint}"):
        read_package(path)
    monkeypatch.delenv("MEDIMG_TRUST")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    store = tmp_path / "home" / ".config" / "medimg" / "trust"
    store.mkdir(parents=True)
    shutil.copy(alice.public, store / "alice.pub.pem")
    assert read_package(path).trusted
    unsigned = pack_model(run_dir, tmp_path / "u.medimg")
    with pytest.raises(PackageSignatureError, match=r"u\.medimg: is unsigned"):
        read_package(unsigned)


def test_encrypted_round_trip(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "correct horse battery staple"
    path = pack_model(run_dir, tmp_path / "e.medimg", passphrase=secret)
    assert secret.encode() not in path.read_bytes()  # never stored
    locked = read_package(path, trust=[])  # hashes check without the passphrase
    assert locked.encrypted
    assert (
        locked.member_bytes("weights.safetensors")[:8]
        != (
            read_package(pack_model(run_dir, tmp_path / "p.medimg"), trust=[]).member_bytes(
                "weights.safetensors"
            )[:8]
        )
    )
    with pytest.raises(PackagePassphraseError, match=r"e\.medimg is encrypted: give its pass"):
        locked.state_dict()
    assert _same(read_package(path, passphrase=secret, trust=[]).state_dict(), _weights(run_dir))
    with pytest.raises(PackagePassphraseError, match=r"wrong passphrase for .*e\.medimg") as err:
        read_package(path, passphrase="Correct horse battery staple", trust=[])
    assert "orse" not in str(err.value)
    (tmp_path / "pass.txt").write_text(secret + "\n")
    monkeypatch.setenv("MEDIMG_PASSPHRASE_FILE", str(tmp_path / "pass.txt"))
    assert _same(read_package(path, trust=[]).state_dict(), _weights(run_dir))


def test_weights_are_deserialised_only_after_verification(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    path = pack_model(run_dir, tmp_path / "t.medimg")
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        data = {i.filename: archive.read(i) for i in infos}
    weights = bytearray(data["weights.safetensors"])
    weights[-1] ^= 0xFF  # one flipped bit in a tensor: the zip CRC is rewritten to match
    data["weights.safetensors"] = bytes(weights)
    with zipfile.ZipFile(path, "w") as archive:
        for info in infos:
            archive.writestr(info, data[info.filename])
    calls: list[bytes] = []
    monkeypatch.setattr(safetensors.torch, "load", lambda b: calls.append(b))
    with pytest.raises(PackageError, match=r"member 'weights\.safetensors' has SHA-256"):
        read_package(path, trust=[]).state_dict()
    assert calls == []


def test_pack_refusals(run_dir: Path, tmp_path: Path, keys: Callable[[str], KeyPair]) -> None:
    with pytest.raises(ConfigError, match=r"must end in \.medimg, got \.zip; name it m\.medimg"):
        pack_model(run_dir, tmp_path / "m.zip")
    path = pack_model(run_dir, tmp_path / "m.medimg")
    with pytest.raises(OutputExistsError, match=r"m\.medimg: exists"):
        pack_model(run_dir, path)
    assert pack_model(run_dir, path, overwrite=True) == path
    with pytest.raises(PackageError, match=r"is already a package"):
        pack_model(path, tmp_path / "again.medimg")
    with pytest.raises(ConfigError, match=r"must hold model\.json"):
        pack_model(tmp_path, tmp_path / "x.medimg")
    with pytest.raises(PackageError, match=r"not an unencrypted PEM private key \(this is a pub"):
        pack_model(run_dir, tmp_path / "y.medimg", sign_key=keys("alice").public)


def test_keygen_writes_a_private_key_only_its_owner_reads(
    keys: Callable[[str], KeyPair], tmp_path: Path
) -> None:
    from medimg.packages import generate_keypair

    pair = keys("carol")
    assert stat.S_IMODE(pair.private.stat().st_mode) == 0o600
    assert "pub" in pair.public.name
    assert pair.fingerprint.startswith("ed25519:")
    with pytest.raises(OutputExistsError, match=r"medimg-signing\.pem: exists; a signing key"):
        generate_keypair(pair.private.parent)


def test_input_contract_is_checked(run_dir: Path, tmp_path: Path) -> None:
    package = read_package(pack_model(run_dir, tmp_path / "c.medimg"), trust=[])
    package.check_input("case.nii.gz", modality="ct", channels=1, spatial_dims=3)
    for field, values, want, got in [
        ("modality", {"modality": "MR"}, "CT", "MR"),
        ("channels", {"channels": 2}, "1", "2"),
        ("spatial_dims", {"spatial_dims": 2}, "3", "2"),
    ]:
        given = {"modality": "CT", "channels": 1, "spatial_dims": 3, **values}
        with pytest.raises(
            PackageError,
            match=rf"case\.nii\.gz does not meet the input contract of .*c\.medimg \(member "
            rf"'contract\.json' field '{field}': the model takes {want}, got {got}\)",
        ):
            package.check_input("case.nii.gz", **given)  # type: ignore[arg-type]
