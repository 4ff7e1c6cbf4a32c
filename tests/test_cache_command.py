"""`stgcn-pyg cache` shows what the cache holds and `cache clear` removes it, only what the project wrote."""

from __future__ import annotations

from stgcn_pyg.cli import main


def test_cache_shows_and_clears_only_the_projects_folders(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("STGCN_PYG_CACHE", str(cache))
    (cache / "onnx").mkdir(parents=True)
    (cache / "onnx" / "last-0123.onnx").write_bytes(b"x" * 3_000_000)
    (cache / "synthetic-abc" / "mars").mkdir(parents=True)
    (cache / "synthetic-abc" / "mars" / "f.jpg").write_bytes(b"x" * 500_000)
    (cache / "someone-elses").mkdir()
    (cache / "someone-elses" / "keep").write_bytes(b"x")
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert f"cache {cache} ($STGCN_PYG_CACHE): 3.5 MB" in out
    assert "onnx: 3.0 MB in 1 folder(s)" in out and "synthetic: 0.5 MB in 1 folder(s)" in out
    assert main(["cache", "clear", "--onnx"]) == 0
    assert capsys.readouterr().out == f"cleared onnx from {cache}: 3.0 MB freed\n"
    assert sorted(p.name for p in cache.iterdir()) == ["someone-elses", "synthetic-abc"]
    assert main(["cache", "clear"]) == 0
    assert sorted(p.name for p in cache.iterdir()) == ["someone-elses"]
    monkeypatch.setenv("STGCN_PYG_CACHE", str(tmp_path / "none"))
    assert main(["cache"]) == 0 and main(["cache", "clear"]) == 0 and not (tmp_path / "none").exists()
