"""Network backends behind one small protocol (:class:`Denoiser`)."""

from tilesr.denoisers.base import Denoiser

__all__ = ["Denoiser"]
