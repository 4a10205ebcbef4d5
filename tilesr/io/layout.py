"""Where the restoration and its uncertainty lie in an output: one image, channels apart.

The output of ``tilesr restore`` is a single OME-NGFF image, so that every viewer that
opens the folder (napari-ome-zarr, ``ome_zarr info``, Fiji, QuPath) shows all of it. Its
axes are the input's in NGFF order (time, channel, space: ``tczyx``). With an
uncertainty, the channel axis (added when the input has none) holds the restoration's
channels first and the uncertainty's after them; the ``omero`` channel labels name them,
and the ``tilesr`` attributes record the indices (``layout``). Without an uncertainty the
output has exactly the input's axes.

The engine's arrays keep the input's axis order (its noise is keyed by that plane order);
:meth:`OutputLayout.region` and :meth:`OutputLayout.place` move each block into the
output's order when it is written, so values never change, only where they are stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tilesr.io.axes import AXIS_LETTERS

RESTORED = "restored"
UNCERTAINTY = "uncertainty"
#: omero display colours: grey for the restoration, magenta for its uncertainty
_COLOURS = {RESTORED: "FFFFFF", UNCERTAINTY: "FF00FF"}


@dataclass(frozen=True)
class OutputLayout:
    """The output array of a restored image and where each part of it goes.

    Attributes
    ----------
    image_axes
        Axes of the engine's image (the input's, in the input's order).
    image_shape
        Its shape.
    uncertainty
        Whether the output also holds the uncertainty.
    """

    image_axes: str
    image_shape: tuple[int, ...]
    uncertainty: bool

    @property
    def axes(self) -> str:
        """Output axes: the image's in NGFF order, with ``c`` when an uncertainty needs it."""
        letters = set(self.image_axes) | ({"c"} if self.uncertainty else set())
        return "".join(a for a in AXIS_LETTERS if a in letters)

    @property
    def channels(self) -> int:
        """Channels of the restoration (1 when the image has no c axis)."""
        if "c" not in self.image_axes:
            return 1
        return int(self.image_shape[self.image_axes.index("c")])

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the output's level 0."""
        sizes = dict(zip(self.image_axes, self.image_shape, strict=True))
        sizes["c"] = self.channels * (2 if self.uncertainty else 1)
        return tuple(int(sizes[a]) for a in self.axes)

    def part_channels(self, part: str) -> list[int]:
        """Output channel indices of ``part`` (:data:`RESTORED` or :data:`UNCERTAINTY`)."""
        if part == UNCERTAINTY and not self.uncertainty:
            return []
        start = self.channels if part == UNCERTAINTY else 0
        return list(range(start, start + self.channels))

    def chunks(self, image_chunks: tuple[int, ...]) -> tuple[int, ...]:
        """Output chunks from the image's, one channel deep (so no two blocks share one)."""
        by_axis = {**dict(zip(self.image_axes, image_chunks, strict=True)), "c": 1}
        return tuple(int(by_axis[a]) for a in self.axes)

    def region(self, image_region: tuple[slice, ...], part: str) -> tuple[slice, ...]:
        """Where a block at ``image_region`` of the image goes in the output, for ``part``."""
        by_axis = dict(zip(self.image_axes, image_region, strict=True))
        offset = self.part_channels(part)[0]
        channel = by_axis.get("c", slice(0, 1))
        by_axis["c"] = slice(channel.start + offset, channel.stop + offset)
        return tuple(by_axis[a] for a in self.axes)

    def place(self, block: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """A block of the image in the output's axis order (with its c axis)."""
        present = [a for a in self.axes if a in self.image_axes]
        moved = np.transpose(block, [self.image_axes.index(a) for a in present])
        if "c" in self.axes and "c" not in self.image_axes:
            moved = np.expand_dims(moved, self.axes.index("c"))
        return moved

    def part_view(self, array: Any, part: str) -> Any:
        """``part`` of an output array (dask or zarr), with the image's axes in NGFF order.

        A c axis the output added for the uncertainty is dropped again.
        """
        if part == UNCERTAINTY and not self.uncertainty:
            return None
        if "c" not in self.axes:
            return array
        c = self.axes.index("c")
        picked = self.part_channels(part)
        index: list[Any] = [slice(None)] * len(self.axes)
        index[c] = picked[0] if "c" not in self.image_axes else slice(picked[0], picked[-1] + 1)
        return array[tuple(index)]

    @property
    def part_axes(self) -> str:
        """Axes of :meth:`part_view`: the image's, in NGFF order."""
        return "".join(a for a in AXIS_LETTERS if a in self.image_axes)

    def record(self) -> dict[str, Any]:
        """What the output's ``tilesr`` attributes record about the layout."""
        return {
            "axes": self.axes,
            "image_axes": self.image_axes,
            "image_shape": list(self.image_shape),
            RESTORED: self.part_channels(RESTORED),
            UNCERTAINTY: self.part_channels(UNCERTAINTY),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> OutputLayout:
        """The layout an output's ``tilesr.layout`` attribute describes."""
        return cls(
            str(record["image_axes"]),
            tuple(int(n) for n in record["image_shape"]),
            bool(record[UNCERTAINTY]),
        )

    def channel_names(self) -> list[str]:
        """One label per output channel (``restored``, ``uncertainty``; numbered when the
        input has several channels)."""
        if "c" not in self.axes:
            return []
        names = []
        for part in (RESTORED, UNCERTAINTY):
            for i, _ in enumerate(self.part_channels(part)):
                names.append(part if self.channels == 1 else f"{part} c{i}")
        return names

    def omero(self, windows: dict[str, tuple[float, float]]) -> dict[str, Any] | None:
        """NGFF ``omero`` display metadata: a label, colour and window per channel.

        ``windows`` gives the (start, end) intensity window of each part.
        """
        if "c" not in self.axes:
            return None
        channels = []
        for part in (RESTORED, UNCERTAINTY):
            start, end = windows.get(part, (0.0, 1.0))
            for i, _ in enumerate(self.part_channels(part)):
                label = part if self.channels == 1 else f"{part} c{i}"
                channels.append(
                    {
                        "label": label,
                        "color": _COLOURS[part],
                        "active": part == RESTORED,
                        "window": {"min": start, "max": end, "start": start, "end": end},
                    }
                )
        return {"channels": channels, "rdefs": {"model": "color"}}
