"""Cached kernels are dropped when any kernel source changes (Numba alone would keep a caller's
copy of a changed callee from another module)."""

from rtvc._native import drop_stale_cache


def test_cache_is_dropped_when_any_source_changes_and_kept_otherwise(tmp_path):
    src, cache = tmp_path / "native", tmp_path / "native" / "__pycache__"
    cache.mkdir(parents=True)
    (src / "linalg.py").write_text("def matvec(): pass\n")
    (src / "cepstrum.py").write_text("from .linalg import matvec\n")

    def fill():
        for n in ("cepstrum.envelope-9.py311.nbi", "cepstrum.envelope-9.py311.1.nbc"):
            (cache / n).write_bytes(b"x")

    fill()
    assert drop_stale_cache(src, cache)  # no stamp yet: built from unknown sources
    assert not list(cache.glob("*.nb?"))
    fill()
    assert not drop_stale_cache(src, cache)  # same sources: kept
    assert len(list(cache.glob("*.nb?"))) == 2
    (src / "linalg.py").write_text("def matvec(): return 1\n")  # a callee in another file changes
    assert drop_stale_cache(src, cache)
    assert not list(cache.glob("*.nb?"))
    assert not list(cache.glob("*.tmp"))


def test_unwritable_cache_is_left_alone(tmp_path):
    src = tmp_path / "native"
    src.mkdir()
    (src / "k.py").write_text("x = 1\n")
    missing_parent = tmp_path / "file-not-dir"
    missing_parent.write_text("")
    assert not drop_stale_cache(src, missing_parent / "__pycache__")  # cannot be created: no error
