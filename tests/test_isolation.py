"""Tests write only under their temporary folders: the session's $STGCN_PYG_CACHE and $HOME (conftest.py), and a
test that escapes them fails at the library's cache call; nobody else's use of the user's cache fails a session."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stgcn_pyg.data.synth.cache import GUARD_ENV, default_cache_dir
from stgcn_pyg.errors import CacheGuardError


def test_subprocesses_use_the_sessions_cache_and_home_not_the_users():
    """A subprocess used to miss an in-process redirect and leave a 47 MB ONNX export in the user's cache."""
    code = ("from pathlib import Path; from stgcn_pyg.deploy.engine import engine_cache_dir; "
            "print(engine_cache_dir()); print(Path.home())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    onnx, home = (Path(line) for line in proc.stdout.split())
    session = Path(os.environ["STGCN_PYG_CACHE"]).parent
    assert onnx == session / "cache" / "onnx" and home == session / "home"
    for real in map(Path, os.environ[GUARD_ENV].split(os.pathsep)):
        assert not onnx.is_relative_to(real) and not real.is_relative_to(session)


def test_the_library_refuses_a_guarded_cache_and_only_under_the_guard(tmp_path, monkeypatch):
    users = tmp_path / "users-cache"
    monkeypatch.setenv(GUARD_ENV, os.pathsep.join([str(tmp_path / "elsewhere"), str(users)]))
    monkeypatch.setenv("STGCN_PYG_CACHE", str(users / "sub"))  # inside a guarded folder counts too
    with pytest.raises(CacheGuardError, match="users-cache"):
        default_cache_dir()
    (tmp_path / "link").symlink_to(users, target_is_directory=True)
    users.mkdir()
    monkeypatch.setenv("STGCN_PYG_CACHE", str(tmp_path / "link"))  # through a link
    with pytest.raises(CacheGuardError):
        default_cache_dir()
    monkeypatch.setenv("STGCN_PYG_CACHE", str(tmp_path / "users-cache-2"))  # a name sharing the prefix: not inside
    assert default_cache_dir() == tmp_path / "users-cache-2"
    monkeypatch.delenv(GUARD_ENV)  # any other process: no guard
    monkeypatch.setenv("STGCN_PYG_CACHE", str(users))
    assert default_cache_dir() == users


INNER_TESTS = """
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    def test_writes_where_it_should():
        from stgcn_pyg.deploy.engine import engine_cache_dir

        engine_cache_dir().mkdir(parents=True, exist_ok=True)
        (engine_cache_dir() / "tiny-1.onnx").write_bytes(b"session")

    def test_escapes_in_process(monkeypatch):
        if os.environ.get("LEAK"):
            from stgcn_pyg.deploy.engine import engine_cache_dir

            monkeypatch.setenv("STGCN_PYG_CACHE", os.environ["USERS_CACHE"])
            (engine_cache_dir() / "tiny-2.onnx").write_bytes(b"leak")

    def test_escapes_in_a_subprocess():
        if os.environ.get("LEAK"):
            env = {**os.environ, "STGCN_PYG_CACHE": os.environ["USERS_CACHE"]}
            code = ("from stgcn_pyg.data import ensure_synthetic; "
                    "ensure_synthetic(num_ids=2, min_frames=2, max_frames=2, height=16, width=8, progress=False)")
            proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
"""

# Another terminal's use of the cache: files appear, change and go in the user's cache while the session runs.
OTHER_USER = """
import sys, time
from stgcn_pyg.data.synth.cache import default_cache_dir

onnx = default_cache_dir() / "onnx"
onnx.mkdir(parents=True, exist_ok=True)
for i in range(100000):
    (onnx / f"last-{i % 3}.onnx").write_bytes(b"x" * (i % 7))
    (onnx / f"last-{(i + 1) % 3}.onnx").unlink(missing_ok=True)
    if i == 0:
        print("started", flush=True)
    time.sleep(0.01)
"""


@pytest.fixture
def inner_session(pytester, monkeypatch):
    """``run(**env)``: a pytest session of INNER_TESTS under this project's conftest.py, which takes
    pytester.path/users-cache (holding onnx/kept.onnx) for the user's cache."""
    users = pytester.path / "users-cache"
    (users / "onnx").mkdir(parents=True)
    (users / "onnx" / "kept.onnx").write_bytes(b"old")
    monkeypatch.setenv("STGCN_PYG_CACHE", str(users))  # what the inner session takes for the user's cache
    monkeypatch.setenv("USERS_CACHE", str(users))
    monkeypatch.delenv(GUARD_ENV)  # the inner session sets its own
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_inner=textwrap.dedent(INNER_TESTS))

    def run(**env):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return pytester.runpytest_subprocess("-p", "no:cacheprovider")

    run.users = users
    return run


def test_a_test_that_escapes_the_redirect_fails_before_writing(inner_session):
    clean = inner_session()
    assert clean.ret == 0, clean.stdout.str()
    leaked = inner_session(LEAK="1")
    assert leaked.ret == 1
    leaked.stdout.fnmatch_lines(["*CacheGuardError*users-cache*guards*"])
    leaked.assert_outcomes(passed=1, failed=2)
    assert sorted(p.name for p in inner_session.users.iterdir()) == ["onnx"]
    assert sorted(p.name for p in (inner_session.users / "onnx").iterdir()) == ["kept.onnx"]


def test_another_process_using_the_users_cache_throughout_does_not_fail_the_session(inner_session):
    """Issue 39: an `evaluate` in another terminal wrote an export into the user's cache during the suite, and
    the suite's before/after comparison of that folder failed it."""
    env = {k: v for k, v in os.environ.items() if k != GUARD_ENV}
    env["STGCN_PYG_CACHE"] = str(inner_session.users)
    other = subprocess.Popen([sys.executable, "-c", OTHER_USER], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "started\n"
        before = time.time()
        result = inner_session()
        assert other.poll() is None, "the other process stopped before the session ended"
    finally:
        other.kill()
        other.wait()
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=3)
    written = [p for p in (inner_session.users / "onnx").glob("last-*.onnx") if p.stat().st_mtime >= before - 1]
    assert written, "the other process wrote nothing during the session"
