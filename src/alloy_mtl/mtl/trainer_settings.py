"""What the :class:`~alloy_mtl.mtl.training.trainer.Trainer` honours: the part of the training parameters
(:class:`alloy_mtl.mtl.params.TrainingParams`) that steers the optimisation loop."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from alloy_mtl.config.base import ParamsModel
from alloy_mtl.mtl.gradients import gradient_method_parameters
from alloy_mtl.mtl.optim.optimizers import OPTIMIZERS
from alloy_mtl.mtl.optim.schedules import SCHEDULES

#: Gradient-method parameters the trainer sets from the tasks and the seed.
TRAINER_SUPPLIED = frozenset({"task_weights", "task_kinds", "seed"})


class Monitor(ParamsModel):
    """The validation metric that drives the LR schedule, early stopping and the best checkpoint."""

    metric: str = "val_loss"
    """Epoch metric to watch: ``val_loss``, ``val_<task>_loss``, ``val_<task>_ap`` (classification),
    ``val_<task>_mae`` (regression), ``train_...`` or a gradient diagnostic."""
    mode: Literal["min", "max"] = "min"
    """Whether a lower (``min``) or a higher (``max``) value of ``metric`` is better."""


class LRScheduler(ParamsModel):
    """Learning-rate schedule (``alloy_mtl.mtl.optim.schedules``): the reference study's ``reduce_on_plateau``
    (``patience``, ``factor``), ``cosine`` (``warmup_epochs`` linear warm-up, then half-cosine decay; both
    stop at ``min_lr``) or ``one_cycle``, set every step (``lr`` is the peak, reached after ``pct_start`` of
    the planned steps from ``lr / div_factor``; it ends at ``lr / (div_factor * final_div_factor)``)."""

    name: str = "reduce_on_plateau"
    patience: int = Field(3, ge=0)
    """reduce_on_plateau: epochs without improvement of the monitored metric before the lr is cut."""
    factor: float = Field(0.1, gt=0, lt=1)
    """reduce_on_plateau: the lr is multiplied by this on each cut."""
    min_lr: float = Field(0.0, ge=0)
    """Floor of the lr (reduce_on_plateau, cosine)."""
    warmup_epochs: int = Field(0, ge=0)
    """cosine: epochs of linear warm-up before the decay."""
    pct_start: float = Field(0.3, gt=0, lt=1)
    """one_cycle: share of the planned steps spent rising to the peak ``lr``."""
    div_factor: float = Field(25.0, ge=1)
    """one_cycle: the first lr is ``lr / div_factor``."""
    final_div_factor: float = Field(1.0e4, ge=1)
    """one_cycle: the last lr is ``lr / (div_factor * final_div_factor)``."""

    @field_validator("name")
    @classmethod
    def _known_schedule(cls, value: str) -> str:
        return SCHEDULES.check(value)


class EarlyStopping(ParamsModel):
    """Stop after ``patience`` epochs without improvement, never before ``min_epochs``."""

    enabled: bool = True
    """False trains every epoch of ``epochs``."""
    patience: int = Field(10, ge=0)
    """Epochs without an improvement of the monitored metric before training stops."""
    min_epochs: int = Field(15, ge=0)
    """Training never stops before this epoch."""
    min_delta: float = Field(0.0, ge=0)
    """Smallest change of the monitored metric that counts as an improvement."""


class WeightAveraging(ParamsModel):
    """An exponential moving average of the weights (timm's ``ModelEmaV3``), evaluated, selected and delivered
    in place of the raw weights: it smooths the epoch-to-epoch swings of short, high-learning-rate runs.

    The average's decay after ``s`` optimizer steps is ``1 - (1 + s) ** -warmup_power``, capped at ``decay``
    (0.93 after 33 steps, 0.99 after ~460 with the default power), so early weights are forgotten fast.
    BatchNorm statistics are averaged with the weights.
    """

    enabled: bool = False
    """Train with the weight average; not available data-parallel (DDP)."""
    decay: float = Field(0.998, gt=0, lt=1)
    """Upper bound of the average's decay per optimizer step."""
    warmup_power: float = Field(0.75, gt=0, le=1)
    """Exponent of the decay's warm-up ``1 - (1 + s) ** -warmup_power``."""


class PreciseBatchNorm(ParamsModel):
    """Recompute BatchNorm's statistics before each validation ("precise BN", Wu & Johnson 2021): forward
    ``batches`` training batches without gradients and take the plain mean of their statistics, instead of the
    running average that lags behind weights moving fast. The delivered weights carry statistics so computed.
    """

    enabled: bool = False
    """Recompute BatchNorm statistics before each validation."""
    batches: int = Field(10, ge=1)
    """Training batches whose statistics are averaged."""


class GradientMethodParams(ParamsModel, extra="allow"):
    """The gradient method by name and its own parameters (checked against the method's accepted ones)."""

    name: str = "equal"
    """Gradient method: ``equal``, ``uncertainty``, ``gradnorm``, ``pcgrad``, ``pcgrad_fast`` or a torchjd
    aggregator (``upgrad``, ``mgda``, ``dualproj``, ...); further keys are the method's own parameters."""
    diagnostics_every: int = Field(20, ge=0)
    """Steps between gradient diagnostics (task-gradient cosine and conflict share) for methods that do not
    compute per-task gradients anyway; 0 switches them off."""

    @model_validator(mode="after")
    def _known_method_and_parameters(self) -> GradientMethodParams:
        key, accepted = gradient_method_parameters(self.name)
        allowed = accepted - TRAINER_SUPPLIED
        unknown = sorted(set(self.options) - allowed)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for method {key!r}; allowed: {sorted(allowed)}")
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The method's parameters (everything but ``name``)."""
        return {"diagnostics_every": self.diagnostics_every, **(self.model_extra or {})}


class TrainerSettings(ParamsModel):
    """What the :class:`~alloy_mtl.mtl.training.trainer.Trainer` honours."""

    epochs: int = Field(10, ge=1)
    """Epochs to train (early stopping may end sooner); an architecture's ``train_options.epochs`` wins."""
    optimizer: str = "adam"
    """Optimizer by name from the optimizer registry: ``adam``, ``adamw``, ``sgd``, ``rmsprop``."""
    lr: float = Field(1e-3, gt=0)
    """Learning rate (the peak of the one_cycle schedule)."""
    weight_decay: float = Field(1e-4, ge=0)
    """Weight decay of the optimizer."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """Momentum of the optimizers that take one (sgd); ignored, with a warning, by the others."""
    fused_optimizer: bool = True
    """Torch's fused optimizer kernel where there is one (adam, adamw, sgd; rmsprop has none): on 2 CPU
    cores ResNet18's Adam step fell from 61 to 13 ms; false keeps torch's default implementation."""
    grad_clip_norm: float | None = Field(5.0, gt=0)
    """Gradients are clipped to this norm before each step (null: no clipping)."""
    monitor: Monitor = Monitor()
    """The metric that selects the checkpoint and drives the schedule and early stopping."""
    lr_scheduler: LRScheduler = LRScheduler()
    early_stopping: EarlyStopping = EarlyStopping()
    ema: WeightAveraging = WeightAveraging()
    precise_bn: PreciseBatchNorm = PreciseBatchNorm()
    gradient_method: GradientMethodParams = GradientMethodParams()
    restore_best: bool = True
    """End training with the weights of the best epoch by ``monitor`` (false keeps the last epoch's)."""
    seed: int = 42
    """Seed of the initial weights, dropout masks and batch order."""
    deterministic: bool = True
    """Ask torch for deterministic algorithms (same seed, same result on a CPU)."""
    flush_denormal: Literal["auto"] | bool = "auto"
    """Flush subnormal floats to zero on a CPU (``auto``: on for a CPU device; process-wide,
    deterministic): RMSprop with weight decay drives weights into the subnormal range, where CPU arithmetic
    is many times slower."""
    device: str = "auto"
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:<n>``."""
    amp: Literal["auto"] | bool = "auto"
    """bf16 autocast of the forward: ``auto`` on CUDA only; true on any device (on a CPU with AMX or
    AVX512-BF16 it pays for some networks, e.g. VGG16, but torch 2.14.1's CPU kernels can diverge at 16 px:
    ``alloy_mtl.mtl.training.meter.CPU_BF16_HINT``; see ``alloy_mtl.mtl.device.autocasts``); false never."""
    channels_last: Literal["auto"] | bool = "auto"
    """Channels-last memory format: ``auto`` on CUDA only; true on any device (on a CPU it pays for some
    networks, e.g. EfficientNet-B0; see ``alloy_mtl.mtl.device.memory_format``)."""
    sync_batchnorm: bool = True
    """Under DDP on CUDA, BatchNorm statistics of the global batch (SyncBatchNorm); false keeps per-GPU
    ones."""
    progress_bar: Literal["auto"] | bool = "auto"
    """tqdm progress bar: ``auto`` shows one only on a terminal."""
    progress_every: int = Field(10, ge=1)
    """Steps between updates of the progress bar's postfix."""
    time_budget_s: float | None = Field(None, gt=0)
    """Stop after the epoch that spends this many seconds (null: no budget); ties the epoch count to the
    machine's speed."""

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return OPTIMIZERS.check(value.lower())

    @property
    def show_progress(self) -> bool | None:
        """None lets tqdm decide (a bar only on a terminal), else the explicit choice."""
        return None if self.progress_bar == "auto" else bool(self.progress_bar)
