"""medimg.io.integrity and medimg.io.locks: file identity, output locks across real processes, stale temporaries."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import medimg.io.integrity as integrity
import medimg.io.locks as locks
from medimg.errors import OutputLockedError
from medimg.io import atomic_path
from medimg.io.integrity import (
    FileIdentity,
    file_identity,
    is_temporary_name,
    remove_stale_temporaries,
)
from medimg.io.locks import LOCK_NAME, OutputLock

# --------------------------------------------------------------------------------------------
# identity


def test_identity_follows_content_not_times(tmp_path: Path) -> None:
    a = tmp_path / "a.bin"
    a.write_bytes(b"abc")
    first = file_identity(a)
    # hand-checked: sha256("abc")
    assert first.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert first.size == 3
    os.utime(a, ns=(1, 1))  # touch to another time: same content
    assert file_identity(a).same_content(first)
    copy = tmp_path / "copy.bin"
    copy.write_bytes(b"abc")
    assert file_identity(copy).same_content(first)  # path does not matter
    # same size, other bytes, the old mtime put back: the changed ctime forces a re-hash
    touched = file_identity(a)
    a.write_bytes(b"abd")
    os.utime(a, ns=(1, touched.mtime_ns))
    changed = file_identity(a, previous=touched)
    assert (changed.size, changed.mtime_ns) == (touched.size, touched.mtime_ns)
    assert not changed.same_content(touched)
    assert not first.same_content(None)


def test_stat_shortcut_skips_the_hash_only_when_nothing_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.nii.gz"
    path.write_bytes(b"0123456789")
    recorded = file_identity(path)

    def no_reading(_: object) -> str:
        raise AssertionError("hashed although the stat was unchanged")

    monkeypatch.setattr(integrity, "sha256_file", no_reading)
    assert file_identity(path, previous=recorded) is recorded
    path.write_bytes(b"0123456789")  # rewritten: ctime (and mtime) move
    with pytest.raises(AssertionError, match="hashed although"):
        file_identity(path, previous=recorded)


def test_identity_json_round_trip_and_invalid_records(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    identity = file_identity(path)
    assert FileIdentity.from_json(json.loads(json.dumps(identity.to_json()))) == identity
    assert FileIdentity.from_json(None) is None
    assert FileIdentity.from_json({"path": "p", "size": 1}) is None  # keys missing
    assert FileIdentity.from_json({**identity.to_json(), "size": "many"}) is None
    with pytest.raises(FileNotFoundError):
        file_identity(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# locks

_HOLDER = """
import sys, time
from medimg.io.locks import OutputLock
with OutputLock(sys.argv[1], "holder"):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def _holding(folder: Path) -> Iterator[subprocess.Popen[str]]:
    """A second Python process holding ``folder``'s lock until its stdin closes."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "held"
            yield child
        finally:
            if child.poll() is None:
                child.kill()


def test_a_second_process_is_refused_then_takes_over_a_killed_holder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "out"
    with _holding(folder) as child:
        with pytest.raises(
            OutputLockedError, match=rf"out is in use by pid {child.pid} since \S+ \(holder \(-c "
        ):
            OutputLock(folder, "medimg predict").acquire()
        assert (folder / LOCK_NAME).is_file()  # the refused run left the holder's lock alone
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert (folder / LOCK_NAME).is_file()  # kill -9 leaves it behind
    with caplog.at_level(logging.WARNING), OutputLock(folder, "medimg predict") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert "taking over the lock of holder (-c " in caplog.text
    assert f"which is no longer running (pid {child.pid} since " in caplog.text
    assert not (folder / LOCK_NAME).exists()  # released on exit


def test_lock_released_by_a_finished_holder(tmp_path: Path) -> None:
    with _holding(tmp_path) as child:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
    assert not (tmp_path / LOCK_NAME).exists()
    with OutputLock(tmp_path):
        pass


def _write_lock(folder: Path, **fields: object) -> Path:
    record = {"pid": os.getpid(), "host": locks.socket.gethostname(),
              "started": "2026-01-01T00:00:00+00:00", "process_start": None, "command": "x"}  # fmt: skip
    path = folder / LOCK_NAME
    path.write_text(json.dumps(record | fields))
    return path


def test_a_reused_pid_is_taken_over_but_a_live_one_and_another_host_are_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    me = locks._process_start(os.getpid())
    assert me is not None  # Linux /proc
    _write_lock(tmp_path, process_start=me)  # this very process: alive
    with pytest.raises(OutputLockedError, match=rf"in use by pid {os.getpid()} since 2026-01-01"):
        OutputLock(tmp_path).acquire()
    _write_lock(tmp_path, process_start=str(int(me) + 1))  # same pid, another start: reused
    with caplog.at_level(logging.WARNING), OutputLock(tmp_path):
        pass
    assert "no longer running" in caplog.text
    _write_lock(tmp_path, host="elsewhere.example")
    with pytest.raises(
        OutputLockedError, match=r"on host elsewhere.example .*delete .*medimg.lock"
    ):
        OutputLock(tmp_path).acquire()


def test_an_empty_lock_is_refused_while_fresh_and_taken_over_when_old(tmp_path: Path) -> None:
    path = tmp_path / LOCK_NAME
    path.write_bytes(b"")
    with pytest.raises(OutputLockedError, match=r"lock .* is unreadable; if no medimg run"):
        OutputLock(tmp_path).acquire()
    old = time.time() - 3600
    os.utime(path, (old, old))
    with OutputLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


# --------------------------------------------------------------------------------------------
# stale temporaries


def test_stale_temporaries_are_removed_and_nothing_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "case_004.nii.gz"

    def interrupted_write() -> None:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_write()
    assert list(tmp_path.iterdir()) == []  # an interrupted write leaves nothing
    stale = tmp_path / ".case_004.nii.gz.k2j3h_x9.tmp.nii.gz"
    stale.write_bytes(b"killed")  # what kill -9 leaves: the temporary, never renamed
    names = (LOCK_NAME, ".hidden", "case_003.nii.gz", ".notes.tmp", "a.abcdefgh.tmp.nii")
    keep = [tmp_path / n for n in names]
    for path in keep:
        path.write_bytes(b"keep")
    nested = tmp_path / "sub" / ".x.json.ABCDEFGH.tmp.json"
    nested.parent.mkdir()
    nested.write_bytes(b"{")
    with caplog.at_level(logging.WARNING):
        assert remove_stale_temporaries(tmp_path) == [stale]
    assert "removed 1 temporary file(s) left by an interrupted run" in caplog.text
    assert all(p.exists() for p in keep)
    assert nested.exists()
    assert remove_stale_temporaries(tmp_path, recursive=True) == [nested]
    assert remove_stale_temporaries(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (".case_004.nii.gz.k2j3h_x9.tmp.nii.gz", True),
        (".summary.json.AbCd1234.tmp.json", True),
        (".best.pt.abcdefgh.tmp.pt", True),
        (".medimg.lock", False),
        (".case.nii.gz.short.tmp.nii.gz", False),  # 5 characters, not 8
        ("case_004.nii.gz", False),
    ],
)
def test_temporary_names(name: str, expected: bool) -> None:
    assert is_temporary_name(name) is expected
