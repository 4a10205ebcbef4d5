from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

import yaml

from tilesr.data.registry import default_registry
from tilesr.errors import TilesrError
from tilesr.training.config import (
    ExportConfig,
    ForwardModelSource,
    SimulatedSource,
    W2SSource,
    config_from_dict,
    load_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _tiny() -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / "tiny.yaml").read_text())


def _with(path: str, value: Any) -> dict[str, Any]:
    """The tiny config with one dotted key set (sources addressed as data.sources.0.x)."""
    raw = copy.deepcopy(_tiny())
    *parents, last = path.split(".")
    node: Any = raw
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return raw


SHIPPED = sorted([*CONFIGS.glob("*.yaml"), *CONFIGS.glob("ablations/*.yaml")])


@pytest.fixture
def placeholder_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TILESR_DATA holding an empty file at every path of every registered dataset."""
    for dataset in default_registry().values():
        for f in dataset.files:
            (tmp_path / dataset.name / f.path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / dataset.name / f.path).touch()
    monkeypatch.setenv("TILESR_DATA", str(tmp_path))
    return tmp_path


def test_shipped_configs_load(placeholder_datasets: Path) -> None:
    tiny = load_config(CONFIGS / "tiny.yaml")
    assert tiny.model.channels == (16, 32)
    assert isinstance(tiny.data.sources[0], SimulatedSource)
    default = load_config(CONFIGS / "default.yaml")
    kinds = [s.kind for s in default.data.sources]
    assert kinds == ["simulated", "forward_model", "w2s"]
    forward = default.data.sources[1]
    assert isinstance(forward, ForwardModelSource)
    # data:NAME/PATH names a registered file, resolved to the local copy (here: TILESR_DATA)
    expected = [placeholder_datasets / "sim_microtubules" / "sim_microtubules_1004.tif"]
    expected += [
        placeholder_datasets / "bpae" / f"BPAE_{k}.tif" for k in ("actin", "mito", "nuclei")
    ]
    assert [Path(p) for p in forward.paths] == [p.resolve() for p in expected]
    assert len(SHIPPED) >= 6
    for path in SHIPPED:  # every shipped config loads on a machine with only the repository
        load_config(path)


@pytest.mark.skipif(
    not (CONFIGS.parents[1] / "shared" / "data").is_dir(),
    reason="developer data ../shared/data not available",
)
def test_shipped_configs_use_the_developer_copies_beside_the_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TILESR_DATA", raising=False)
    shared = (CONFIGS.parents[1] / "shared" / "data").resolve()
    for path in SHIPPED:
        for source in load_config(path).data.sources:
            paths = [*getattr(source, "paths", ()), getattr(source, "root", None)]
            for p in filter(None, paths):
                assert Path(p).is_relative_to(shared), (path.name, p)


def test_a_missing_dataset_names_the_fetch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TILESR_DATA", str(tmp_path / "empty"))
    raw = _tiny()
    raw["data"]["sources"].append({"kind": "forward_model", "paths": ["data:bpae/BPAE_actin.tif"]})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(TilesrError) as exc:
        load_config(tmp_path / "c.yaml")
    message = str(exc.value)
    assert "\n" not in message and message.startswith("config data.sources[1]")
    assert "dataset 'bpae' is not on this machine" in message
    assert "`tilesr data fetch bpae`" in message
    raw["data"]["sources"][1]["paths"] = ["data:bpea/BPAE_actin.tif"]
    with pytest.raises(TilesrError, match=r"unknown dataset 'bpea' \(known: bpae, "):
        config_from_dict(raw, base_dir=tmp_path)


def test_round_trip_through_dict() -> None:
    tiny = load_config(CONFIGS / "tiny.yaml")
    assert config_from_dict(tiny.to_dict()) == tiny


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("training.stepz", 3, "'stepz'.*'training'"),
        ("model.width", 3, "'width'.*'model'"),
        ("data.sources.0.sizee", 3, "'sizee'.*simulated"),
        ("colour", "red", "'colour'"),
        ("export.overlap", 32, "32 versus 32"),
        ("export.tile_size", 34, "multiple of 4.*34"),
        ("training.patch_size", 30, "multiple of 4.*30"),
        ("training.lr", -0.001, "lr.*-0.001"),
        ("training.steps", 0, "steps.*0"),
        ("training.loss", "huber", "'huber'"),
        ("validation.sampler", "euler", "'euler'"),
        ("data.sources.0.kind", "imagenet", "'imagenet'"),
        ("training.batch_size", "eight", "batch_size.*'eight'"),
        ("diffusion.kind", "sigmoid", "'sigmoid'"),
        ("data.sources.0.val_seed", 0, "val_seed"),
        ("training.focus_steps", 0, "focus_steps.*0"),
        ("training.focus_fraction", 0.0, "focus_fraction.*0.0"),
        ("data.sources.0.target_background", 1.5, "target_background.*1.5"),
        ("data.target_optics_unknown", 1.0, "target_optics_unknown.*1.0"),
        ("data.target_optics", "yes", "data.target_optics.*'yes'"),
        ("export.target_optics", "blurry", "'blurry'"),
        ("export.target_optics", "same", "needs a network trained with data.target_optics"),
    ],
)
def test_bad_values_are_named(path: str, value: Any, named: str) -> None:
    with pytest.raises(TilesrError, match=named):
        config_from_dict(_with(path, value))


def test_missing_data_path_is_named(tmp_path: Path) -> None:
    raw = _tiny()
    raw["data"]["sources"] = [{"kind": "w2s", "root": "no/such/w2s", "bin_lr": True}]
    with pytest.raises(TilesrError, match="no/such/w2s"):
        config_from_dict(raw, base_dir=tmp_path)


def test_relative_paths_resolve_next_to_the_config_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cfg" / "w2s").mkdir(parents=True)
    (tmp_path / "w2s").mkdir()
    raw = _tiny()
    raw["data"]["sources"] = [{"kind": "w2s", "root": "w2s", "bin_lr": True}]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg" / "c.yaml").write_text(yaml.safe_dump(raw))
    source = load_config(tmp_path / "cfg" / "c.yaml").data.sources[0]
    assert isinstance(source, W2SSource)
    assert Path(source.root) == (tmp_path / "cfg" / "w2s").resolve()
    (tmp_path / "cfg" / "w2s").rmdir()  # now only the working directory has it
    source = load_config(tmp_path / "cfg" / "c.yaml").data.sources[0]
    assert Path(source.root) == (tmp_path / "w2s").resolve()


def test_same_grid_source_needs_binning_for_super_resolution(tmp_path: Path) -> None:
    (tmp_path / "w2s").mkdir()
    raw = _tiny()
    raw["data"]["sources"] = [{"kind": "w2s", "root": str(tmp_path / "w2s")}]
    with pytest.raises(TilesrError, match="bin_lr"):
        config_from_dict(raw)


def test_w2s_fields_must_not_overlap_validation(tmp_path: Path) -> None:
    raw = _tiny()
    raw["data"]["sources"] = [
        {"kind": "w2s", "root": str(tmp_path), "fields": [1, 2], "val_fields": [2], "bin_lr": True}
    ]
    with pytest.raises(TilesrError, match=r"\[2\]"):
        config_from_dict(raw)


def test_both_tutorial_schedules_are_expressible() -> None:
    a = config_from_dict(
        _with(
            "diffusion", {"kind": "linear", "timesteps": 2000, "beta_start": 1e-6, "beta_end": 0.01}
        )
    )
    assert (a.diffusion.timesteps, a.diffusion.beta_start, a.diffusion.beta_end) == (
        2000,
        1e-6,
        0.01,
    )
    b = config_from_dict(_with("diffusion", {"kind": "cosine", "timesteps": 1000}))
    assert b.diffusion.kind == "cosine"


def test_yaml_float_without_dot_is_accepted(tmp_path: Path) -> None:
    text = (CONFIGS / "tiny.yaml").read_text().replace("lr: 2.0e-3", "lr: 2e-3")
    (tmp_path / "c.yaml").write_text(text)
    assert load_config(tmp_path / "c.yaml").training.lr == pytest.approx(2e-3)


def test_overrides_are_checked() -> None:
    tiny = load_config(CONFIGS / "tiny.yaml")
    assert tiny.with_overrides(steps=5, output_dir="x").training.steps == 5
    with pytest.raises(TilesrError, match=r"steps.*0"):
        tiny.with_overrides(steps=0)


def test_export_sampling_reaches_the_model_metadata_and_is_checked():

    from tilesr.training.trainer import model_metadata

    tiny = load_config(CONFIGS / "tiny.yaml")
    export = dataclasses.replace(
        tiny.export,
        strength=0.6,
        sampler="ddim",
        steps=4,
        samples=5,
        sample_noise="antithetic",
        uncertainty_scale=1.7,
        uncertainty_pool=1.5,
    )
    meta = model_metadata(dataclasses.replace(tiny, export=export))
    assert meta.sample_noise == "antithetic"
    assert (meta.strength, meta.sampler, meta.steps, meta.samples) == (0.6, "ddim", 4, 5)
    assert (meta.uncertainty_scale, meta.uncertainty_pool) == (1.7, 1.5)
    with pytest.raises(TilesrError, match="strength"):
        ExportConfig(strength=0.0)
    with pytest.raises(TilesrError, match="export sampler must be one of"):
        ExportConfig(sampler="euler")
    with pytest.raises(TilesrError, match="export sample_noise must be one of"):
        ExportConfig(sample_noise="sobol")


def test_target_optics_gives_the_network_its_input_and_the_export_a_default() -> None:
    config = config_from_dict(_with("data.target_optics", True))
    assert config.model.target_optics_input
    assert config.export.target_optics == "unknown"
    assert config_from_dict(config.to_dict()) == config
    chosen = _with("data.target_optics", True)
    chosen["export"]["target_optics"] = "same"
    assert config_from_dict(chosen).export.target_optics == "same"
    plain = config_from_dict(_tiny())
    assert not plain.model.target_optics_input and plain.export.target_optics is None
