"""Image data: normalisation, resampling, paired datasets and augmentation."""
