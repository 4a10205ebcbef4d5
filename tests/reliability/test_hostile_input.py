"""Malformed and adversarial inputs: OME-Zarr metadata, TIFF bytes, ONNX files.

Each must end in a TilesrError (one line on the command line, exit code 1) within a
time limit and without large allocations, or, where the file is still a valid image,
be read correctly. Nothing may crash, hang or allocate what a header merely declares.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import onnx
import pytest
import tifffile
import zarr
from onnx import TensorProto, helper, numpy_helper

from tests.onnx_models import OPSET, analytic_model
from tests.onnx_models import test_metadata as model_metadata
from tests.reliability.bounds import bounded
from tests.reliability.conftest import FAST, assert_one_line_error, run_cli, tree_digest
from tilesr.data.normalize import IntensityRange
from tilesr.engine.restore import restore
from tilesr.errors import TilesrError
from tilesr.io import open_image, write_ome_zarr
from tilesr.options import RestoreOptions

# ------------------------------------------------------------------ OME-Zarr metadata


def _ms(d):
    return d["attributes"]["ome"]["multiscales"][0]


def _ct(d):
    return _ms(d)["datasets"][0]["coordinateTransformations"][0]


def _grid(d):
    return d["chunk_grid"]["configuration"]


GROUP_MUTATIONS = {
    "axes-extra": lambda d: _ms(d)["axes"].append({"name": "z", "type": "space"}),
    "axes-swapped": lambda d: _ms(d).update(axes=[{"name": "x"}, {"name": "y"}]),
    "axes-string": lambda d: _ms(d).update(axes="yx"),
    "axes-ints": lambda d: _ms(d).update(axes=[1, 2]),
    "axes-unknown-names": lambda d: _ms(d).update(axes=[{"name": "foo"}, {"name": "bar"}]),
    "axes-repeated": lambda d: _ms(d).update(axes=[{"name": "y"}, {"name": "y"}]),
    "datasets-missing": lambda d: _ms(d).pop("datasets"),
    "datasets-empty": lambda d: _ms(d).update(datasets=[]),
    "datasets-string": lambda d: _ms(d).update(datasets="0"),
    "datasets-ints": lambda d: _ms(d).update(datasets=[1]),
    "dataset-path-absent": lambda d: _ms(d)["datasets"][0].update(path="nope"),
    "dataset-path-escapes": lambda d: _ms(d)["datasets"][0].update(path="../../other/0"),
    "dataset-path-absolute": lambda d: _ms(d)["datasets"][0].update(path="/etc"),
    "dataset-path-int": lambda d: _ms(d)["datasets"][0].update(path=3),
    "scale-negative": lambda d: _ct(d).update(scale=[-1.0, 1.0]),
    "scale-zero": lambda d: _ct(d).update(scale=[0.0, 1.0]),
    "scale-infinite": lambda d: _ct(d).update(scale=["Infinity", 1.0]),
    "scale-string": lambda d: _ct(d).update(scale="big"),
    "scale-wrong-length": lambda d: _ct(d).update(scale=[1.0, 1.0, 1.0]),
    "transforms-dict": lambda d: _ms(d)["datasets"][0].update(coordinateTransformations={"a": 1}),
    "multiscales-dict": lambda d: d["attributes"]["ome"].update(multiscales={"a": 1}),
    "multiscales-ints": lambda d: d["attributes"]["ome"].update(multiscales=[1]),
    "ome-list": lambda d: d["attributes"].update(ome=[1]),
    "no-attributes": lambda d: d.update(attributes={}),
    "node-type-array": lambda d: d.update(node_type="array"),
    # returned text replaces the file: json.dumps itself cannot nest this deep
    "deep-nesting": lambda d: json.dumps(d)[:-1] + ', "deep": ' + "[" * 5000 + "]" * 5000 + "}",
}

ARRAY_MUTATIONS = {
    "shape-1e12": lambda d: d.update(shape=[10**12, 10**12]),
    "shape-1e12-chunk-1e12": lambda d: (
        d.update(shape=[10**12, 10**12]),
        _grid(d).update(chunk_shape=[10**12, 10**12]),
    ),
    "shape-2e9-planes": lambda d: (d.update(shape=[2 * 10**9, 40, 50], dimension_names=None),),
    "shape-negative": lambda d: d.update(shape=[-5, 50]),
    "shape-float": lambda d: d.update(shape=[40.5, 50]),
    "shape-1d": lambda d: (
        d.update(shape=[2000], dimension_names=["x"]),
        _grid(d).update(chunk_shape=[100]),
    ),
    "shape-zero": lambda d: d.update(shape=[0, 50]),
    "chunk-zero": lambda d: _grid(d).update(chunk_shape=[0, 50]),
    "chunk-huge": lambda d: _grid(d).update(chunk_shape=[10**9, 10**9]),
    "dtype-complex": lambda d: d.update(data_type="complex128"),
    "dtype-unknown": lambda d: d.update(data_type="banana"),
    "dtype-bool": lambda d: d.update(data_type="bool", fill_value=False),
    "fill-value-string": lambda d: d.update(fill_value="abc"),
    "codec-unknown": lambda d: d.update(codecs=[{"name": "nonexistent"}]),
    "not-json": None,  # replaced by garbage bytes below
}


@pytest.fixture(scope="module")
def base_zarr(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "base.zarr"
    data = (np.arange(40 * 50).reshape(40, 50) % 251).astype(np.uint8)
    write_ome_zarr(path, data, axes="yx")
    return path, data


def _mutated(base: Path, where: Path, name: str, target: str, mutate) -> Path:
    out = where / f"{name}.zarr"
    shutil.copytree(base, out)
    meta = out / target / "zarr.json" if target else out / "zarr.json"
    if mutate is None:
        meta.write_bytes(b"\x00{garbage")
    else:
        doc = json.loads(meta.read_text())
        text = mutate(doc)
        meta.write_text(text if isinstance(text, str) else json.dumps(doc))
    return out


def _open_and_read(path: Path):
    image = open_image(path)
    return image, image.data.compute(scheduler="sync")


@pytest.mark.parametrize("name", sorted(GROUP_MUTATIONS))
def test_fuzzed_group_metadata(tmp_path, base_zarr, name):
    base, data = base_zarr
    path = _mutated(base, tmp_path, name, "", GROUP_MUTATIONS[name])
    try:
        image, pixels = bounded(lambda: _open_and_read(path))
    except TilesrError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    # still a readable image: then it must be the right one
    assert image.axes == "yx"
    np.testing.assert_array_equal(pixels, data)


@pytest.mark.parametrize("name", sorted(ARRAY_MUTATIONS))
def test_fuzzed_array_metadata(tmp_path, base_zarr, name):
    base, data = base_zarr
    path = _mutated(base, tmp_path, name, "0", ARRAY_MUTATIONS[name])
    try:
        image, pixels = bounded(lambda: _open_and_read(path))
    except TilesrError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert pixels.shape == data.shape and image.axes == "yx"


def test_corrupt_chunk_is_a_one_line_error(tmp_path, base_zarr, models):
    """A chunk that does not decode fails inside a task; the user still gets one line."""
    path = tmp_path / "corrupt.zarr"
    shutil.copytree(base_zarr[0], path)
    (chunk,) = [p for p in (path / "0").rglob("*") if p.is_file() and p.name != "zarr.json"]
    chunk.write_bytes(b"not zstd at all" * 10)
    with pytest.raises(TilesrError, match="cannot read"):
        bounded(lambda: _open_and_read(path))
    digest = tree_digest(path)
    code, output = run_cli(
        "restore", path, tmp_path / "o.zarr", "--model", models["analytic1"], *FAST
    )
    assert_one_line_error(code, output, "cannot read")
    assert tree_digest(path) == digest


def test_huge_declared_shape_is_refused_at_once(tmp_path, base_zarr):
    """A header declaring [1e12, 1e12] must not make dask spell out 1e18 chunks."""
    path = _mutated(base_zarr[0], tmp_path, "huge", "0", ARRAY_MUTATIONS["shape-1e12"])
    with pytest.raises(TilesrError, match="chunks"):
        bounded(lambda: open_image(path), seconds=10, max_mb=64)


def _header_only_zarr(path: Path, side: int) -> Path:
    """An OME-Zarr whose header declares ``side``^2 uint16 pixels; no chunk exists."""
    import zarr

    write_ome_zarr(path, np.zeros((64, 64), dtype=np.uint16), axes="yx")
    meta = json.loads((path / "0" / "zarr.json").read_text())
    meta["shape"] = [side, side]
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [1024, 1024]
    (path / "0" / "zarr.json").write_text(json.dumps(meta))
    assert zarr.open_array(str(path / "0")).shape == (side, side)
    return path


def test_large_but_plausible_shape_is_lazy_and_too_many_blocks_are_refused(tmp_path, models):
    """Under the reader's limit the image opens lazily; restore refuses a graph of too
    many blocks before any pass (2^19 x 2^19 pixels in blocks of 64 output pixels)."""
    path = _header_only_zarr(tmp_path / "big.zarr", 2**19)  # 512 GB as uint16; a header
    image = bounded(lambda: open_image(path), seconds=10, max_mb=64)
    assert image.data.shape == (2**19, 2**19)
    small_blocks = RestoreOptions(block_size=64)
    with pytest.raises(TilesrError, match="too large"):
        bounded(
            lambda: restore(image.data, str(models["analytic2"]), small_blocks),
            seconds=10,
            max_mb=64,
        )
    # the command line refuses it in one line, before reading a pixel
    code, output = bounded(
        lambda: run_cli(
            "restore",
            path,
            tmp_path / "o.zarr",
            "--model",
            models["analytic2"],
            "--block-size",
            "64",
            *FAST,
        ),
        seconds=20,
        max_mb=128,
    )
    assert_one_line_error(code, output, "too large")
    assert not (tmp_path / "o.zarr").exists()


def test_a_slide_sized_plan_holds_blocks_not_tiles(tmp_path, models):
    """2^17 x 2^17 input pixels at 2x, 32-px tiles: 16641 blocks of ~7700 tiles each.

    A graph that held its tiles (~1e8 windows) would need GBs; one that holds blocks
    plans in a few MB per thousand blocks, and each task lists its tiles when it runs.
    """
    image = open_image(_header_only_zarr(tmp_path / "slide.zarr", 2**17)).data
    res = bounded(
        lambda: restore(image, str(models["analytic2"]), intensity_range=IntensityRange(0, 1)),
        seconds=60,
        max_mb=120,
    )
    assert res.image.numblocks == (129, 129) and len(res.block_tiles) == 129**2
    assert res.tiles > 10**8  # planned, never listed


def test_huge_declared_shape_cli_under_a_memory_limit(tmp_path, base_zarr, models):
    """The real command in a child process with 3 GB of address space: exit 1, one line."""
    path = _mutated(base_zarr[0], tmp_path, "huge", "0", ARRAY_MUTATIONS["shape-1e12"])

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tilesr",
            "restore",
            str(path),
            str(tmp_path / "o.zarr"),
            "--model",
            str(models["analytic2"]),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "chunks" in lines[0]


# ------------------------------------------------------------------ TIFF bytes


@pytest.fixture(scope="module")
def tiff_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiff") / "good.tif"
    data = (np.random.default_rng(0).random((3, 40, 48)) * 1000).astype(np.uint16)
    tifffile.imwrite(
        path,
        data,
        tile=(16, 16),
        compression="zlib",
        metadata={"axes": "ZYX"},
        photometric="minisblack",
    )
    return path.read_bytes(), data


def _corrupt(raw: bytes, seed: int) -> bytes:
    """Bit flips anywhere, a truncation, or overwritten header/IFD words."""
    rng = np.random.default_rng(seed)
    b = bytearray(raw)
    mode = seed % 3
    if mode == 0:
        for _ in range(int(rng.integers(1, 10))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
    elif mode == 1:
        b = b[: int(rng.integers(0, len(b)))]
    else:
        for lo, hi in ((0, 400), (len(b) - 600, len(b))):
            i = int(rng.integers(max(lo, 0), hi))
            b[i : i + 4] = rng.integers(0, 256, 4).astype(np.uint8).tobytes()
    return bytes(b)


def test_corrupted_tiffs(tmp_path, tiff_bytes):
    raw, _ = tiff_bytes
    outcomes = {"refused": 0, "read": 0}
    for seed in range(90):
        path = tmp_path / f"c{seed}.tif"
        path.write_bytes(_corrupt(raw, seed))
        try:
            image, pixels = bounded(lambda path=path: _open_and_read(path), seconds=10)
        except TilesrError as exc:
            assert str(exc) and "\n" not in str(exc)
            outcomes["refused"] += 1
            continue
        # a flip that left the file readable: the shape is still the declared one
        assert pixels.shape == image.data.shape
        outcomes["read"] += 1
    assert outcomes["refused"] > 0


def test_tiff_declaring_a_huge_image(tmp_path):
    """ImageWidth/ImageLength patched to 2**31: refused as truncated, nothing allocated."""
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, np.zeros((8, 8), dtype=np.uint8))
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        offsets = [tags[name].valueoffset for name in ("ImageWidth", "ImageLength")]
        types = [tags[name].dtype for name in ("ImageWidth", "ImageLength")]
    raw = bytearray(path.read_bytes())
    for off, typ in zip(offsets, types, strict=True):
        width = 4 if typ == 4 else 2
        value = 2**31 if width == 4 else 65535
        raw[off : off + width] = value.to_bytes(width, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(TilesrError):
        bounded(lambda: _open_and_read(path), seconds=10, max_mb=64)


# ------------------------------------------------------------------ ONNX files


def _io(noisy=("N", 1, "H", "W"), t_type=TensorProto.FLOAT):
    return (
        [
            helper.make_tensor_value_info("noisy", TensorProto.FLOAT, list(noisy)),
            helper.make_tensor_value_info("cond", TensorProto.FLOAT, ["N", 1, "H", "W"]),
            helper.make_tensor_value_info("t", t_type, ["N"]),
        ],
        [helper.make_tensor_value_info("eps", TensorProto.FLOAT, ["N", 1, "H", "W"])],
    )


def _onnx(path: Path, nodes, inits=(), *, props=None, **io_kwargs) -> Path:
    inputs, outputs = _io(**io_kwargs)
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    helper.set_model_props(model, props if props is not None else model_metadata().to_props())
    onnx.save(model, str(path))
    return path


def _props_with(**changes):
    doc = json.loads(model_metadata().to_props()["tilesr"])
    doc.update(changes)
    return {"tilesr": json.dumps(doc)}


IDENTITY = [helper.make_node("Identity", ["noisy"], ["eps"])]
ONNX_CASES = {
    "static-huge-dims": lambda p: _onnx(p, IDENTITY, noisy=("N", 1, 10**9, 10**9)),
    "static-small-dims": lambda p: _onnx(
        p, [helper.make_node("Add", ["noisy", "cond"], ["eps"])], noisy=("N", 1, 16, 16)
    ),
    "timestep-int64": lambda p: _onnx(p, IDENTITY, t_type=TensorProto.INT64),
    "wrong-output-shape": lambda p: _onnx(
        p,
        [helper.make_node("Slice", ["noisy", "st", "en", "ax"], ["eps"])],
        [
            numpy_helper.from_array(np.array([v], np.int64), n)
            for n, v in (("st", 0), ("en", 4), ("ax", 3))
        ],
    ),
    "nan-output": lambda p: _onnx(
        p,
        [helper.make_node("Mul", ["noisy", "nan"], ["eps"])],
        [numpy_helper.from_array(np.array(np.nan, np.float32), "nan")],
    ),
    "allocates-4TB": lambda p: _onnx(
        p,
        [
            helper.make_node("ConstantOfShape", ["shape"], ["big"]),
            helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
            helper.make_node("Mul", ["noisy", "s"], ["eps"]),
        ],
        [numpy_helper.from_array(np.array([10**6, 10**6], np.int64), "shape")],
    ),
    "meta-scale-string": lambda p: _onnx(p, IDENTITY, props=_props_with(scale="2")),
    "meta-tile-float": lambda p: _onnx(p, IDENTITY, props=_props_with(tile_size=32.5)),
    "meta-tile-1e18": lambda p: _onnx(p, IDENTITY, props=_props_with(tile_size=10**18)),
    "meta-overlap-negative": lambda p: _onnx(p, IDENTITY, props=_props_with(overlap=-1)),
    "meta-schedule-list": lambda p: _onnx(p, IDENTITY, props=_props_with(schedule=[1])),
    "meta-timesteps-1e12": lambda p: _onnx(
        p,
        IDENTITY,
        props=_props_with(
            schedule={"kind": "linear", "timesteps": 10**12, "beta_start": 1e-4, "beta_end": 0.02}
        ),
    ),
    "meta-norm-null": lambda p: _onnx(p, IDENTITY, props=_props_with(norm_low=None)),
    "meta-not-json": lambda p: _onnx(p, IDENTITY, props={"tilesr": "{not json"}),
    "meta-2MB": lambda p: _onnx(p, IDENTITY, props={"tilesr": "[" * 2_000_000}),
    "meta-deeply-nested": lambda p: _onnx(
        p, IDENTITY, props={"tilesr": "[" * 100_000 + "]" * 100_000}
    ),
    "garbage-bytes": lambda p: p.write_bytes(b"\x08\x07garbage" * 100) and p,
    "empty-file": lambda p: p.write_bytes(b"") or p,
}


@pytest.fixture(scope="module")
def small_tiff(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx_in") / "in.tif"
    tifffile.imwrite(path, (np.random.default_rng(0).random((40, 40)) * 1000).astype(np.uint16))
    return path


@pytest.mark.parametrize("name", sorted(ONNX_CASES))
def test_hostile_onnx_models(tmp_path, small_tiff, name):
    model = tmp_path / f"{name}.onnx"
    ONNX_CASES[name](model)
    digest = tree_digest(small_tiff)
    out = tmp_path / "out.zarr"
    code, output = bounded(
        lambda: run_cli("restore", small_tiff, out, "--model", model, *FAST), seconds=30
    )
    assert_one_line_error(code, output)
    assert not out.exists()
    assert tree_digest(small_tiff) == digest


#: models that run on the blank probe tile but fail on bright input (cond > 0.5): the
#: failure comes from a block task, not from the probe before planning
DATA_DEPENDENT_CASES = {
    # sqrt(0.5 - cond): finite on the blank tile, NaN where the input is bright
    "nan-on-bright-input": lambda p: _onnx(
        p,
        [
            helper.make_node("Sub", ["half", "cond"], ["d"]),
            helper.make_node("Sqrt", ["d"], ["r"]),
            helper.make_node("Mul", ["noisy", "r"], ["eps"]),
        ],
        [numpy_helper.from_array(np.array(0.5, np.float32), "half")],
    ),
    # allocates max(cond) * 1e12 floats: nothing for the blank tile, 4 TB for a bright one
    "allocates-on-bright-input": lambda p: _onnx(
        p,
        [
            helper.make_node("ReduceMax", ["cond"], ["m"], keepdims=0),
            helper.make_node("Relu", ["m"], ["mp"]),
            helper.make_node("Mul", ["mp", "tera"], ["n"]),
            helper.make_node("Cast", ["n"], ["ni"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["ni", "one"], ["shape"]),
            helper.make_node("ConstantOfShape", ["shape"], ["big"]),
            helper.make_node("ReduceSum", ["big", "axis0"], ["s"], keepdims=0),
            helper.make_node("Mul", ["noisy", "s"], ["scaled"]),
            helper.make_node("Add", ["noisy", "scaled"], ["eps"]),
        ],
        [
            numpy_helper.from_array(np.array(1e12, np.float32), "tera"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
            numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(DATA_DEPENDENT_CASES))
def test_a_model_failing_on_some_data_is_one_line_and_leaves_an_unfinished_output(
    tmp_path, small_tiff, name
):
    model = tmp_path / f"{name}.onnx"
    DATA_DEPENDENT_CASES[name](model)
    out = tmp_path / "out.zarr"
    code, output = bounded(
        lambda: run_cli("restore", small_tiff, out, "--model", model, *FAST), seconds=60
    )
    assert_one_line_error(code, output, model.name)
    if out.exists():  # never an output that looks complete
        status = zarr.open_group(out, mode="r").attrs.get("tilesr", {}).get("status")
        assert status != "complete"


def test_a_failing_model_prints_one_line_on_stderr_alone(tmp_path, small_tiff):
    # ONNX Runtime logs from C++ straight to the process's stderr: only a child shows it
    model = DATA_DEPENDENT_CASES["allocates-on-bright-input"](tmp_path / "alloc.onnx")
    out = tmp_path / "out.zarr"
    args = ["restore", small_tiff, out, "--model", model, *FAST]
    result = subprocess.run(
        [sys.executable, "-m", "tilesr", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: alloc.onnx failed"), result.stderr


def test_truncated_onnx(tmp_path, small_tiff):
    good = analytic_model(tmp_path / "good.onnx", metadata=model_metadata(scale=1))
    for cut in (10, 200, good.stat().st_size // 2, good.stat().st_size - 3):
        model = tmp_path / f"cut{cut}.onnx"
        model.write_bytes(good.read_bytes()[:cut])
        code, output = bounded(
            lambda model=model: run_cli(
                "restore", small_tiff, tmp_path / "o.zarr", "--model", model, *FAST
            ),
            seconds=30,
        )
        assert_one_line_error(code, output)


def test_restore_of_a_lazy_huge_array_is_refused_without_computing(models):
    # 2^48 pixels: 67 million blocks of the default 2040 px, over the graph's limit
    huge = da.zeros((2**24, 2**24), chunks=4096, dtype=np.uint16)
    with pytest.raises(TilesrError, match="too large"):
        bounded(lambda: restore(huge, str(models["analytic1"])), seconds=10, max_mb=64)
