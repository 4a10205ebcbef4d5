"""RestoreOptions: one frozen value, checked once where it is made; the CLI builds it."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from tilesr.cli import main
from tilesr.cli.restore import command, restore_options
from tilesr.errors import TilesrError
from tilesr.options import RestoreOptions


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"samples": 0}, "samples must be a positive integer, got 0"),
        ({"steps": 2.5}, "steps must be an integer, got 2.5"),
        ({"batch_size": True}, "batch size must be an integer, got True"),
        ({"block_size": 4}, "block size must be an integer of at least 8, got 4"),
        ({"threads": -1}, "threads must be a positive integer, got -1"),
        ({"seed": -3}, "seed must be an integer of at least 0, got -3"),
        ({"sampler": "euler"}, "sampler must be one of ddpm, ddim, dpmpp, got 'euler'"),
        ({"fuse": "never"}, "fuse must be one of step, final, got 'never'"),
        ({"sample_noise": "x"}, "sample noise must be one of antithetic, independent, got 'x'"),
        ({"strength": 0.0}, r"strength must be in \(0, 1\], got 0.0"),
        ({"skip_background": 1.5}, r"skip background must be in \[0, 1\], got 1.5"),
        ({"consistency": 100.0}, r"consistency must be a sigma in \[0, 64\] input pixels"),
        ({"consistency": "2"}, "consistency must be a sigma"),
        ({"nan_policy": "x"}, "nan policy must be one of refuse, zero, mean, got 'x'"),
        ({"dtype": "uint8"}, "output dtype must be one of float32, input, got 'uint8'"),
        ({"zarr_format": 4}, "zarr format must be 2 .* or 3 .*, got 4"),
        ({"uncertainty": "yes"}, "uncertainty must be true, false or None, got 'yes'"),
        ({"tile_size": "64"}, "tile size must be an integer, got '64'"),
    ],
)
def test_bad_values_are_refused_naming_them(values, message):
    with pytest.raises(TilesrError, match=message):
        RestoreOptions(**values)


def test_is_frozen_and_normalises_the_axes():
    options = RestoreOptions(axes="ZYX")
    assert options.axes == "zyx"
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.samples = 3  # type: ignore[misc]


def test_every_field_is_a_restore_option_of_the_command_line():
    # the command passes its options named like the fields on as they are
    params = {p.name for p in command.params}
    missing = {f.name for f in dataclasses.fields(RestoreOptions)} - params
    assert not missing, missing
    with pytest.raises(TypeError, match="without a RestoreOptions field"):
        restore_options({"samples": 2, "colour": "blue"})


def test_a_bad_option_is_one_line_on_the_command_line(tmp_path):
    result = CliRunner().invoke(main, ["restore", "in.tif", str(tmp_path / "o"), "--samples", "0"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: samples must be a positive integer, got 0"
