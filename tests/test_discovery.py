"""anonymizer.pipeline.discovery: which files a run finds under IN, in which order."""

from __future__ import annotations

from pathlib import Path

import pytest

from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.pipeline.discovery import discover


def _touch(root: Path, *relatives: str) -> None:
    for relative in relatives:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    _touch(root, "b/2.dcm", "b/10.dcm", "a/z/1.dcm", "a/y.dcm", "top.dcm",
           f"a/{TEMP_PREFIX}half-written")
    return root


def test_files_come_in_sorted_order_per_folder_and_temporaries_are_left_out(tree):
    assert list(discover(tree)) == ["a/y.dcm", "a/z/1.dcm", "b/10.dcm", "b/2.dcm", "top.dcm"]


def test_a_symlink_loop_is_entered_once(tree):
    (tree / "a" / "z" / "back").symlink_to(tree / "a", target_is_directory=True)
    (tree / "again").symlink_to(tree, target_is_directory=True)
    assert list(discover(tree)) == ["a/y.dcm", "a/z/1.dcm", "b/10.dcm", "b/2.dcm", "top.dcm"]


@pytest.mark.parametrize("spelling", ["plain", "through a symlink", "with dot-dot"])
def test_the_excluded_folder_is_never_entered_by_any_link_or_spelling(tmp_path, tree,
                                                                       spelling):
    out = tmp_path / "out"
    _touch(out, "x/output.dcm")
    (tree / "b" / "to-out").symlink_to(out, target_is_directory=True)
    (tree / "to-link").symlink_to(tree / "b" / "to-out", target_is_directory=True)
    exclude = {"plain": out,
               "through a symlink": tree / "to-link",
               "with dot-dot": tmp_path / "in" / ".." / "out"}[spelling]
    found = list(discover(tree, exclude=exclude))
    assert found == ["a/y.dcm", "a/z/1.dcm", "b/10.dcm", "b/2.dcm", "top.dcm"]
    # without the exclusion both links lead into OUT (the first one reached is walked)
    assert "b/to-out/x/output.dcm" in list(discover(tree))


def test_an_exclude_that_does_not_exist_excludes_nothing(tmp_path, tree):
    assert list(discover(tree, exclude=tmp_path / "missing")) == list(discover(tree))


def test_the_root_itself_is_walked_even_when_it_is_the_excluded_folder(tree):
    # (run and verify refuse OUT == IN before discovery: the root is never skipped)
    assert list(discover(tree, exclude=tree)) == list(discover(tree))


def test_a_missing_root_yields_nothing(tmp_path):
    assert list(discover(tmp_path / "missing")) == []
