"""The training loop: conditional DDPM (epsilon, x0 or v prediction) or plain regression
(CARE-like), AdamW, warm-up + cosine LR, EMA, checkpoints.

Each step draws its batch, timesteps and noise from ``np.random.default_rng([seed, step])``
(NumPy, not torch), so the data a step sees depends only on the seed and the step
number: a run resumed from a checkpoint continues with exactly the batches an
uninterrupted run would have used. The noise schedule is the float64 one of
:func:`tilesr.diffusion.schedule.build_schedule`, cast to float32 where it is used.

Output folder layout::

    checkpoint.pt   latest checkpoint (model, EMA, optimizer, LR scheduler, step, config,
                    history, RNG state); written atomically
    best.pt         the checkpoint at the validation with the highest PSNR so far (export
                    it to get the early-stopped model, as CARE keeps its best weights)
    loss.csv        step, training loss (mean since the previous row), learning rate,
                    process CPU seconds since the run began (summed over resumes)
    metrics.csv     step and validation metrics of the EMA weights (model space, range 2)
    curves.png      loss and each metric against the step
    examples.png    validation images: input | output | target
    config.yaml     the configuration of the run
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from tilesr import __version__
from tilesr.denoisers.torch_backend import TorchDenoiser
from tilesr.diffusion.parameterization import training_target
from tilesr.diffusion.samplers import make_sampler, spaced_timesteps
from tilesr.diffusion.sampling import sample
from tilesr.diffusion.schedule import NoiseSchedule, build_schedule
from tilesr.errors import TilesrError
from tilesr.export.onnx_export import AFTER_TRAINING
from tilesr.metadata import REGRESSION_SAMPLING, ModelMetadata
from tilesr.metrics import ImageMetrics, image_metrics
from tilesr.model.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from tilesr.model.refined import RefinedUNet, canonical_config, model_config_dict
from tilesr.model.target_optics import engine_network
from tilesr.model.unet import UNet
from tilesr.training.config import TrainConfig, TrainingConfig
from tilesr.training.data import TrainingData, load_training_data
from tilesr.training.ema import EMA
from tilesr.training.plots import METRIC_NAMES, plot_curves, plot_examples

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"


@dataclass(frozen=True)
class TrainResult:
    """What a call to :func:`train` produced."""

    output_dir: Path
    checkpoint: Path
    step: int
    loss: float  # mean training loss over the last logging interval (nan if none)
    metrics: ImageMetrics | None  # last validation, averaged over the images
    seconds: float
    cpu_seconds: float = float("nan")  # process CPU time of the whole run (all resumes)


#: the graph's output name for each prediction (``eps`` is what older models use)
OUTPUT_NAMES = {"epsilon": "eps", "x0": "x0", "v": "v"}


def model_metadata(config: TrainConfig) -> ModelMetadata:
    """The metadata an export of this run's model will carry."""
    ec, tc = config.export, config.training
    # what an export may still set after training, as the config's export section says
    chosen: dict[str, Any] = {key: getattr(ec, key) for key in AFTER_TRAINING}
    if tc.objective == "regression":  # one deterministic evaluation from the conditioning
        chosen.update(REGRESSION_SAMPLING)
    # a refined model answers in image space: the clean image (p + r0), a diffusion model
    prediction = "x0" if tc.objective == "refinement" else tc.prediction
    return ModelMetadata(
        schedule=config.diffusion,
        prediction=prediction,
        objective="regression" if tc.objective == "regression" else "diffusion",
        scale=ec.scale,
        tile_size=ec.tile_size,
        size_multiple=config.model.size_multiple,
        norm_low=ec.norm_low,
        norm_high=ec.norm_high,
        output=OUTPUT_NAMES[prediction],
        tilesr_version=__version__,
        **chosen,
    )


def lr_factor(step: int, *, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``.

    The warm-up is clipped to half the run, so a short run (``--steps``) still decays.
    """
    warmup = min(warmup, total // 2)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _device(config: TrainConfig) -> torch.device:
    choice = config.training.device
    if choice == "cuda" and not torch.cuda.is_available():
        raise TilesrError("training device 'cuda' was requested but CUDA is not available")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> TrainResult:
    """Train a conditional DDPM as ``config`` describes.

    Parameters
    ----------
    config
        The run (see :mod:`tilesr.training.config`).
    resume
        Continue from ``output_dir/checkpoint.pt`` (weights, EMA, optimizer, LR
        scheduler, history, RNG state); starts afresh if there is none. Without it an
        existing checkpoint is an error, so a run is never silently overwritten.
    progress
        Show a tqdm progress bar with the loss.
    stop_at
        Stop after this step (with a checkpoint) although ``training.steps`` is larger,
        e.g. to fit a time-limited job; a later ``resume=True`` call continues.

    Returns
    -------
    TrainResult
        Paths, the final step, the last loss and validation metrics.
    """
    started = time.perf_counter()
    run = _open_run(config, resume=resume, stop_at=stop_at)
    metrics = _loop(run, progress=progress)
    if not run.checkpoint.exists():  # zero steps left (resumed a finished run): still leave one
        run.save()
    history = run.history
    if metrics is None and history["val_step"]:
        metrics = ImageMetrics(**{m: history[m][-1] for m in METRIC_NAMES})
    return TrainResult(
        output_dir=run.out,
        checkpoint=run.checkpoint,
        step=run.step,
        loss=history["loss"][-1] if history["loss"] else float("nan"),
        metrics=metrics,
        seconds=time.perf_counter() - started,
        cpu_seconds=run.cpu_seconds(),
    )


@dataclass
class _Run:
    """One training run between steps: what a checkpoint holds, and where it is written."""

    config: TrainConfig
    out: Path
    device: torch.device
    data: TrainingData
    schedule: NoiseSchedule
    metadata: ModelMetadata
    model: torch.nn.Module  # a UNet, or predictor + refiner (tilesr.model.refined)
    ema: EMA
    optimizer: torch.optim.Optimizer
    lr_schedule: torch.optim.lr_scheduler.LambdaLR
    history: dict[str, list[float]]
    step: int
    last: int  # the step this call stops at
    # losses since the last log row; kept in the history so a resume logs identically
    recent: list[float] = field(default_factory=list)
    # process CPU time is what "the same training budget" means on a shared machine
    cpu_before: float = 0.0
    cpu_start: float = field(default_factory=time.process_time)

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT_NAME

    def cpu_seconds(self) -> float:
        return self.cpu_before + time.process_time() - self.cpu_start

    def save(self, path: Path | None = None) -> None:
        state = {
            **self.history,
            "pending_loss": list(self.recent),
            "cpu_total": [self.cpu_seconds()],
        }
        _save(
            path or self.checkpoint,
            self.config,
            self.metadata,
            self.model,
            self.ema,
            self.optimizer,
            self.lr_schedule,
            self.step,
            state,
        )
        # plotting costs seconds: curves at validation and at the end, CSVs every save
        _write_logs(self.out, self.history, curves=self.step == self.last)


def _open_run(config: TrainConfig, *, resume: bool, stop_at: int | None) -> _Run:
    """Data, model and optimiser, fresh or from the checkpoint; the run's folder prepared."""
    out = Path(config.output_dir)
    ckpt_path = out / CHECKPOINT_NAME
    if ckpt_path.exists() and not resume:
        raise TilesrError(
            f"{ckpt_path} already exists; pass --resume to continue it "
            "or choose another --output-dir"
        )
    tc = config.training
    device = _device(config)
    torch.manual_seed(tc.seed)
    data = load_training_data(config)
    schedule = build_schedule(config.diffusion)
    metadata = model_metadata(config)

    model = build_trained_network(config).to(device)
    ema = EMA(model, tc.ema_decay)
    trainable = [p for p in model.parameters() if p.requires_grad]  # a predictor is frozen
    optimizer = torch.optim.AdamW(trainable, lr=tc.lr, weight_decay=tc.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup=tc.warmup, total=tc.steps)
    )
    history: dict[str, list[float]] = {
        "loss_step": [],
        "loss": [],
        "lr": [],
        "cpu_s": [],
        "val_step": [],
    }
    history.update({m: [] for m in METRIC_NAMES})
    step = 0
    if resume and ckpt_path.exists():
        step, history = _restore(ckpt_path, config, model, ema, optimizer, lr_schedule, device)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(
        yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8"
    )
    recent = history.pop("pending_loss", [])
    history.setdefault("cpu_s", [])  # checkpoints from before CPU time was logged
    cpu_before = history.pop("cpu_total", [0.0])[0]
    last = min(tc.steps, stop_at) if stop_at is not None else tc.steps
    return _Run(
        config, out, device, data, schedule, metadata, model, ema, optimizer, lr_schedule,
        history, step, last, recent, cpu_before,
    )  # fmt: skip


def _loop(run: _Run, *, progress: bool) -> ImageMetrics | None:
    """Steps up to ``run.last``: log, validate (keeping best.pt) and checkpoint on schedule."""
    tc = run.config.training
    loss_fn = torch.nn.functional.mse_loss if tc.loss == "mse" else torch.nn.functional.l1_loss
    metrics: ImageMetrics | None = None
    bar = tqdm(
        total=run.last, initial=run.step, disable=not progress, desc="train", dynamic_ncols=True
    )
    run.model.train()
    try:
        while run.step < run.last:
            _step(run, loss_fn)
            bar.update(1)
            if run.step % tc.log_every == 0 or run.step == tc.steps:
                _log_loss(run)
                bar.set_postfix(loss=f"{run.history['loss'][-1]:.4f}")
            validate_now = tc.validate_every and run.step % tc.validate_every == 0
            if run.data.validation and (validate_now or run.step == tc.steps):
                metrics = _validate(
                    run.data, run.ema, run.metadata, run.config, run.device, run.out, run.step,
                    run.history,
                )  # fmt: skip
                if run.history["psnr"][-1] >= max(run.history["psnr"]):
                    run.save(run.out / BEST_NAME)
            if run.step % tc.checkpoint_every == 0 or run.step == run.last:
                run.save()
    except KeyboardInterrupt:
        if run.step > 0:
            run.save()  # keep what was done; --resume continues from here
        raise
    finally:
        bar.close()
    return metrics


def _step(run: _Run, loss_fn: Any) -> None:
    """One optimiser step on the batch of ``(seed, step)``."""
    tc = run.config.training
    rng = np.random.default_rng([tc.seed, run.step])
    loss = _loss(run.model, run.data, run.schedule, run.config, rng, run.device, loss_fn)
    if not torch.isfinite(loss):
        raise TilesrError(
            f"training loss became {loss.item()} at step {run.step}; lower training.lr"
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if tc.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), tc.grad_clip)
    run.optimizer.step()
    run.lr_schedule.step()
    run.ema.update(run.model)
    run.step += 1
    run.recent.append(loss.item())


def _log_loss(run: _Run) -> None:
    """A loss.csv row: the mean loss since the last row, the learning rate, CPU time."""
    history = run.history
    history["loss_step"].append(run.step)
    history["loss"].append(float(np.mean(run.recent)))
    history["lr"].append(float(run.lr_schedule.get_last_lr()[0]))
    history["cpu_s"].append(round(run.cpu_seconds(), 2))
    run.recent = []


def build_trained_network(config: TrainConfig) -> torch.nn.Module:
    """The network a run trains: a U-Net, or predictor + refiner for objective refinement."""
    if config.training.objective != "refinement":
        return UNet(config.model)
    assert config.training.predictor is not None  # checked by TrainingConfig
    source = config.training.predictor
    if not Path(source).is_file():
        raise TilesrError(
            f"training.predictor {source} does not exist; train the regression run first"
        )
    predictor = load_checkpoint(source)
    if predictor.metadata.get("objective") != "regression":
        raise TilesrError(f"training.predictor {source} is not a regression model's checkpoint")
    if config.model.size_multiple % predictor.unet_config().size_multiple:
        raise TilesrError(
            f"training.predictor {source} needs sizes the refiner's U-Net cannot take"
        )
    model = RefinedUNet(predictor.unet_config(), config.model, config.diffusion)
    model.predictor.load_state_dict(build_model(predictor, source=source).state_dict())
    return model


def network_config(config: TrainConfig) -> dict[str, Any]:
    """The ``unet`` entry of this run's checkpoints (a refiner nests its predictor's)."""
    if config.training.objective != "refinement":
        return config.model.to_dict()
    assert config.training.predictor is not None
    predictor = load_checkpoint(config.training.predictor).unet_config()
    return model_config_dict(config.model, predictor)


def _loss(
    model: torch.nn.Module,
    data: TrainingData,
    schedule: NoiseSchedule,
    config: TrainConfig,
    rng: np.random.Generator,
    device: torch.device,
    loss_fn: Any,
) -> torch.Tensor:
    """One batch's loss; batch, timesteps and noise all come from ``rng``."""
    tc = config.training
    cond_np, target_np = data.batch(rng, tc.batch_size)
    t_np = training_timesteps(schedule, tc, rng)
    noise_np = rng.standard_normal(target_np.shape, dtype=np.float32)
    x_t_np = schedule.add_noise(target_np, noise_np, t_np)  # eq. 4 of DDPM
    x_t, cond, noise, x0 = (
        torch.from_numpy(a).to(device) for a in (x_t_np, cond_np, noise_np, target_np)
    )
    t = torch.from_numpy(t_np.astype(np.float32)).to(device)
    if tc.objective == "refinement":
        return _refinement_loss(model, x0, cond, noise, t, t_np, schedule, loss_fn, tc.amp)
    use_amp = tc.amp and device.type == "cuda"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
        output = model(x_t, cond, t)  # a regression network ignores x_t and t
    if tc.objective == "regression":
        return loss_fn(output.float(), x0)
    abar = schedule.alphas_cumprod[t_np].reshape(-1, 1, 1, 1)
    sqrt_abar, sqrt_one_minus = (
        torch.from_numpy(a.astype(np.float32)).to(device)
        for a in (np.sqrt(abar), np.sqrt(1 - abar))
    )
    target = training_target(x0, noise, sqrt_abar, sqrt_one_minus, tc.prediction)
    return loss_fn(output.float(), target)  # eq. 14 of DDPM (L_simple) for epsilon


def training_timesteps(
    schedule: NoiseSchedule, training: TrainingConfig, rng: np.random.Generator
) -> np.ndarray:
    """One batch's timesteps: uniform over all T, or partly the few a sampler visits.

    With ``focus_steps`` a fraction of the batch is drawn from the ``focus_steps``-step
    linspace spacing: a few-step sampler only ever asks the network at those timesteps,
    while uniform training spends nearly all of its updates on timesteps it never visits.
    Without it the draw is exactly the uniform one, so older configs train as before.
    """
    size = training.batch_size
    t = rng.integers(0, schedule.num_timesteps, size=size)
    if training.focus_steps is None:
        return t
    visited = np.asarray(spaced_timesteps(schedule, training.focus_steps))
    focused = rng.random(size) < training.focus_fraction
    return np.where(focused, rng.choice(visited, size=size), t)


def _refinement_loss(
    model: Any,
    x0: torch.Tensor,
    cond: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    t_np: np.ndarray,
    schedule: NoiseSchedule,
    loss_fn: Any,
    amp: bool,
) -> torch.Tensor:
    """The refiner's v-loss on the residual r0 = x0 - P(cond) (P frozen)."""
    use_amp = amp and x0.device.type == "cuda"
    abar = schedule.alphas_cumprod[t_np].reshape(-1, 1, 1, 1)
    a, s = (
        torch.from_numpy(v.astype(np.float32)).to(x0.device)
        for v in (np.sqrt(abar), np.sqrt(1 - abar))
    )
    with torch.no_grad(), torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=use_amp):
        prediction = model.predictor(x0, cond, t).float()
    residual = x0 - prediction
    residual_t = a * residual + s * noise  # eq. 4 of DDPM, for the residual
    with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=use_amp):
        v = model.predict_residual_velocity(residual_t, cond, prediction, t)
    return loss_fn(v.float(), training_target(residual, noise, a, s, "v"))


def _restore(
    path: Path,
    config: TrainConfig,
    model: torch.nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> tuple[int, dict[str, list[float]]]:
    """Load a checkpoint's states into the fresh objects; returns its step and history."""
    ckpt = load_checkpoint(path)
    if canonical_config(ckpt.unet) != network_config(config):
        raise TilesrError(
            f"{path} holds a different U-Net ({ckpt.unet}) "
            f"than the config ({network_config(config)})"
        )
    saved_schedule = ckpt.train_config.get("diffusion")
    if saved_schedule != dataclasses.asdict(config.diffusion):
        raise TilesrError(
            f"{path} was trained with schedule {saved_schedule}, the config says {config.diffusion}"
        )
    model.load_state_dict(ckpt.model)
    ema.load_state_dict(ckpt.ema, updates=ckpt.step)
    model.to(device)
    ema.model.to(device)
    if ckpt.optimizer is not None:
        optimizer.load_state_dict(ckpt.optimizer)
    if ckpt.lr_scheduler is not None:
        scheduler.load_state_dict(ckpt.lr_scheduler)
    if ckpt.rng_state is not None and "torch" in ckpt.rng_state:
        torch.set_rng_state(ckpt.rng_state["torch"])  # only dropout draws from torch's RNG
    return int(ckpt.step), {k: list(v) for k, v in ckpt.history.items()}


def _save(
    path: Path,
    config: TrainConfig,
    metadata: ModelMetadata,
    model: torch.nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    history: dict[str, list[float]],
) -> None:
    rng_state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng_state["cuda"] = torch.cuda.get_rng_state_all()
    save_checkpoint(
        path,
        Checkpoint(
            unet=network_config(config),
            metadata=dataclasses.asdict(metadata),
            model={k: v.detach().cpu() for k, v in model.state_dict().items()},
            ema={k: v.detach().cpu() for k, v in ema.state_dict().items()},
            optimizer=optimizer.state_dict(),
            lr_scheduler=scheduler.state_dict(),
            step=step,
            train_config=config.to_dict(),
            history={k: list(v) for k, v in history.items()},
            rng_state=rng_state,
        ),
    )


def _validate(
    data: TrainingData,
    ema: EMA,
    metadata: ModelMetadata,
    config: TrainConfig,
    device: torch.device,
    out: Path,
    step: int,
    history: dict[str, list[float]],
) -> ImageMetrics:
    """Sample every validation image with the EMA weights; log metrics and plots."""
    vc = config.validation
    network = engine_network(ema.model, metadata, str(out))
    denoiser = TorchDenoiser(network, metadata, device=str(device))
    name, steps, samples = vc.sampler, vc.steps, vc.samples
    if metadata.objective == "regression":
        name, steps, samples = metadata.sampler, metadata.steps, metadata.samples
    schedule = build_schedule(metadata.schedule)
    sampler = make_sampler(name, schedule, prediction=metadata.prediction)
    per_image, rows = [], []
    for i, image in enumerate(data.validation):
        result = sample(
            denoiser, image.cond, sampler, n_samples=samples, steps=steps, seed=vc.seed + i
        )
        output = np.clip(result.mean, -1.0, 1.0)
        per_image.append(image_metrics(output, image.target, data_range=2.0))
        rows.append((image.name, image.cond, output, image.target))
    metrics = ImageMetrics(
        **{m: float(np.mean([getattr(x, m) for x in per_image])) for m in METRIC_NAMES}
    )
    history["val_step"].append(step)
    for m in METRIC_NAMES:
        history[m].append(getattr(metrics, m))
    plot_examples(out / "examples.png", rows[:4], step=step)
    _write_logs(out, history, curves=True)
    return metrics


def _write_logs(out: Path, history: dict[str, list[float]], *, curves: bool) -> None:
    """Rewrite the CSV logs and the curves from the history (consistent after a resume)."""
    with open(out / "loss.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "lr", "cpu_s"])
        # a run resumed from a checkpoint older than CPU logging lacks its first rows
        logged = history.get("cpu_s", [])
        cpu: list[float | str] = [""] * (len(history["loss_step"]) - len(logged)) + [*logged]
        w.writerows(zip(history["loss_step"], history["loss"], history["lr"], cpu, strict=True))
    with open(out / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["step", *METRIC_NAMES])
        w.writerows(zip(history["val_step"], *(history[m] for m in METRIC_NAMES), strict=True))
    if curves:
        plot_curves(out / "curves.png", history)
