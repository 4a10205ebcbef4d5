"""`tilesr data fetch/list` against a throwaway HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.http_files import dataset, remote, serve
from tilesr.cli import main

IMAGE = bytes(range(256)) * 4


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["data", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    """The CLI's registry replaced by one dataset `tiny` served locally."""
    with serve({"a.tif": IMAGE, "corrupt.tif": IMAGE[::-1]}) as files:
        registry = {
            **dataset("tiny", remote("a.tif", IMAGE, files.url("a.tif"))),
            **dataset("broken", remote("b.tif", IMAGE, files.url("corrupt.tif"))),
        }
        monkeypatch.setattr("tilesr.data.fetch.default_registry", lambda: registry)
        yield files


def test_fetch_prints_the_folder_and_reuses_the_cache(tmp_path: Path, server) -> None:
    code, out, err = _run("fetch", "tiny", "--cache-dir", str(tmp_path), "--quiet")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "tiny")
    assert (tmp_path / "tiny" / "a.tif").read_bytes() == IMAGE
    code, _, err = _run("fetch", "tiny", "--cache-dir", str(tmp_path), "--quiet")
    assert code == 0, err
    assert server.hits["a.tif"] == 1


def test_the_cache_folder_comes_from_tilesr_data(
    tmp_path: Path, server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TILESR_DATA", str(tmp_path / "env-cache"))
    code, out, err = _run("fetch", "tiny", "--quiet")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "env-cache" / "tiny")


def test_a_checksum_mismatch_exits_non_zero_and_keeps_nothing(tmp_path: Path, server) -> None:
    code, out, err = _run("fetch", "broken", "--cache-dir", str(tmp_path), "--quiet")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "does not match its registered sha256" in err
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_an_unknown_name_is_refused_before_any_download(tmp_path: Path, server) -> None:
    code, _, err = _run("fetch", "tiny", "nope", "--cache-dir", str(tmp_path))
    assert code == 1
    assert err.strip() == "Error: unknown dataset 'nope' (known: broken, tiny)"
    assert server.hits["a.tif"] == 0


def test_list_shows_sizes_licences_sources_and_the_cache(tmp_path: Path, server) -> None:
    code, out, err = _run("list", "--cache-dir", str(tmp_path))
    assert code == 0, err
    assert "tiny  1.0 kB, 1 file: not cached" in out
    assert "licence: CC0; source: tests" in out
    _run("fetch", "tiny", "--cache-dir", str(tmp_path), "--quiet")
    code, out, _ = _run("list", "--cache-dir", str(tmp_path))
    assert f"tiny  1.0 kB, 1 file: cached in {tmp_path / 'tiny'}" in out
    assert "broken  1.0 kB, 1 file: not cached" in out


def test_help_shows_examples() -> None:
    for args in (["--help"], ["fetch", "--help"], ["list", "--help"]):
        code, out, _ = _run(*args)
        assert code == 0 and "Examples:" in out and "tilesr data" in out
