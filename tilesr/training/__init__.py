"""Training (needs the ``train`` extra): YAML config, data mixing, the DDPM loop, EMA, plots.

``load_config(path)`` in :mod:`tilesr.training.config`; ``train(config)`` in
:mod:`tilesr.training.trainer`.
"""
