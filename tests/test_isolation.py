"""Tests write only under their temporary folders: the session's $STGCN_PYG_CACHE and $HOME (conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_subprocesses_use_the_sessions_cache_and_home_not_the_users():
    """A subprocess used to miss an in-process redirect and leave a 47 MB ONNX export in the user's cache."""
    code = ("from pathlib import Path; from stgcn_pyg.deploy.engine import engine_cache_dir; "
            "print(engine_cache_dir()); print(Path.home())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    onnx, home = (Path(line) for line in proc.stdout.split())
    session = Path(os.environ["STGCN_PYG_CACHE"]).parent
    assert onnx == session / "cache" / "onnx" and home == session / "home"
    real = Path(os.environ["STGCN_PYG_REAL_CACHE"])
    assert not onnx.is_relative_to(real) and not real.is_relative_to(session)


def test_a_session_that_changes_the_users_cache_fails(pytester, monkeypatch):
    users = pytester.path / "users-cache"
    (users / "onnx").mkdir(parents=True)
    (users / "onnx" / "kept.onnx").write_bytes(b"old")
    monkeypatch.setenv("STGCN_PYG_CACHE", str(users))  # what the inner session takes for the user's cache
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_inner="""
        import os
        from pathlib import Path

        def test_writes_where_it_should():
            Path(os.environ["STGCN_PYG_CACHE"], "onnx").mkdir(parents=True)
            Path(os.environ["STGCN_PYG_CACHE"], "onnx", "tiny-1.onnx").write_bytes(b"session")

        def test_leaks():
            if os.environ.get("LEAK"):
                Path(os.environ["STGCN_PYG_REAL_CACHE"], "onnx", "tiny-2.onnx").write_bytes(b"leak")
    """)
    clean = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert clean.ret == 0, clean.stdout.str()
    monkeypatch.setenv("LEAK", "1")
    leaked = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert leaked.ret == 1
    leaked.stdout.fnmatch_lines([f"FAILED: the test session changed the user's cache {users} *: onnx/tiny-2.onnx"])
    assert sorted(p.name for p in (users / "onnx").iterdir()) == ["kept.onnx", "tiny-2.onnx"]
