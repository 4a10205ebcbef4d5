"""A denoiser whose optimal answer is known in closed form, for tests.

Data model: given the conditioning image c, the clean image is x0 = mu(c) + s * z with
z ~ N(0, I) per pixel, mu(c) = c. Then E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) c)
/ (abar s^2 + 1 - abar), which is the exact minimiser of the DDPM loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tilesr.diffusion.schedule import build_schedule
from tilesr.metadata import ModelMetadata, ScheduleSpec


@dataclass
class GaussianDenoiser:
    """Optimal noise predictor for x0 ~ N(cond, std**2)."""

    std: float = 0.5
    metadata: ModelMetadata = field(
        default_factory=lambda: ModelMetadata(
            schedule=ScheduleSpec("linear", 1000, 1e-4, 0.02), scale=1, size_multiple=1
        )
    )
    calls: int = 0

    def predict(self, noisy, cond, t):
        self.calls += 1
        schedule = build_schedule(self.metadata.schedule)
        abar = schedule.alphas_cumprod[np.asarray(t).astype(int)].reshape(-1, 1, 1, 1)
        eps = np.sqrt(1 - abar) * (noisy - np.sqrt(abar) * cond) / (abar * self.std**2 + 1 - abar)
        return eps.astype(np.float32)
