"""Multi-task model: a shared backbone and one reference-shaped head per task."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from alloy_mtl.mtl.losses.fds import FDS, FDSCallback
from alloy_mtl.mtl.models.backbones import DEFAULT_ACTIVATIONS, create_backbone, make_activation
from alloy_mtl.mtl.models.conditioning import InstrumentConditioning, WedgeSummary, split_settings
from alloy_mtl.mtl.models.conformal import ConformalSets
from alloy_mtl.mtl.models.dropout import use_seeded_dropout
from alloy_mtl.mtl.models.input_transform import InputNormalizer
from alloy_mtl.mtl.models.ood import FeatureDensity
from alloy_mtl.mtl.models.output_scaling import LogitTemperature, TargetScaler
from alloy_mtl.mtl.tasks import TaskSpec, parse_tasks

logger = logging.getLogger(__name__)

#: The reference head's hidden width and dropout (``model_options.hidden`` / ``dropout`` override them).
HEAD_HIDDEN = 512
HEAD_DROPOUT = 0.3


def make_head(
    num_features: int,
    num_outputs: int,
    activation: str,
    hidden: int = HEAD_HIDDEN,
    dropout: float = HEAD_DROPOUT,
) -> nn.Sequential:
    """The reference head: Linear(F, hidden) -> activation -> Dropout(dropout) -> Linear(hidden, outputs)."""
    return nn.Sequential(
        nn.Linear(num_features, hidden),
        make_activation(activation),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_outputs),
    )


class MultiTaskModel(nn.Module):
    """Shared backbone with one head per task.

    Classification heads return (B, K) logits, regression heads (B,) values.

    Args:
        backbone: module mapping (B, C, H, W) -> (B, num_features).
        num_features: backbone feature size F.
        tasks: task specifications (one head each, in this order).
        activation: activation of the heads.
        hidden: head hidden width.
        dropout: head dropout.
        fds: optional FDS modules by regression task name; see ``forward_heads``.
        normalizer: optional input normalisation applied before the backbone (buffers only, no parameters).
        conditioning: optional instrument conditioning: the input then carries the instrument's settings as
            trailing constant planes (``alloy_mtl.mtl.models.conditioning``), joined to the backbone's features.
        wedge_summary: optional global summary of the wedge (its fitted profile's coefficients), joined too.
        image_gate: with either, the backbone's features enter the fusion times a learned scale that starts at 0
            (ReZero-style): the model starts as an MLP of the summary and the settings, and the image path
            contributes only as far as training finds it useful.

    With either, ``fusion`` (Linear(F + extras, F) -> activation) joins them to the features before the heads.

    ``ood`` (with a classification task) scores how unlike the training images an input is, on the shared
    features (``alloy_mtl.mtl.models.ood``); ``conformal`` holds its split-conformal prediction sets and
    intervals (``alloy_mtl.mtl.models.conformal``); both are fitted after training.

    ``target_scaler`` holds the regression targets' standardisation: ``forward`` returns standardised
    values (what the losses see), :meth:`predict` original units.
    """

    def __init__(  # noqa: PLR0917 (signature fixed by the mtl contract)
        self,
        backbone: nn.Module,
        num_features: int,
        tasks: Sequence[TaskSpec],
        activation: str,
        hidden: int = HEAD_HIDDEN,
        dropout: float = HEAD_DROPOUT,
        fds: Mapping[str, FDS] | None = None,
        normalizer: InputNormalizer | None = None,
        conditioning: InstrumentConditioning | None = None,
        wedge_summary: WedgeSummary | None = None,
        image_gate: bool = False,
    ) -> None:
        super().__init__()
        self.normalizer = normalizer if normalizer is not None else nn.Identity()
        self.conditioning = conditioning
        self.wedge_summary = wedge_summary
        extras = (0 if conditioning is None else len(conditioning.keys)) + (
            0 if wedge_summary is None else wedge_summary.size
        )
        self.fusion = (
            nn.Sequential(nn.Linear(num_features + extras, num_features), make_activation(activation))
            if extras
            else None
        )
        if image_gate and self.fusion is None:
            raise ValueError(
                "image_gate: the model joins nothing to the backbone's features (no instrument conditioning, no "
                "wedge summary), so a gate starting at 0 would leave the heads nothing"
            )
        self.image_gate = nn.Parameter(torch.zeros(())) if image_gate else None
        if not tasks:
            raise ValueError("tasks: expected at least one task")
        self.backbone = backbone
        self.num_features = num_features
        self.tasks = list(tasks)
        self.heads = nn.ModuleDict(
            {t.name: make_head(num_features, t.num_outputs, activation, hidden, dropout) for t in self.tasks}
        )
        self._regression = {t.name for t in self.tasks if not t.is_classification}
        self.target_scaler = TargetScaler([t.name for t in self.tasks if not t.is_classification])
        self.calibration = LogitTemperature([t.name for t in self.tasks if t.is_classification])
        first_class = next((t for t in self.tasks if t.is_classification), None)
        self.ood = None if first_class is None else FeatureDensity(num_features, first_class.num_outputs)
        self.conformal = (
            None
            if first_class is None
            else ConformalSets(
                first_class.num_outputs, [t.name for t in self.tasks if not t.is_classification]
            )
        )
        fds = dict(fds or {})
        unknown = sorted(set(fds) - self._regression)
        if unknown:
            raise ValueError(f"fds: tasks {unknown} are not regression tasks of this model")
        self.fds = nn.ModuleDict(fds)
        use_seeded_dropout(
            self
        )  # the trainer attaches the model's own generator (see alloy_mtl.mtl.models.dropout)

    @property
    def task_names(self) -> list[str]:
        """Task names in head order."""
        return [t.name for t in self.tasks]

    def encode(self, x: Tensor) -> Tensor:
        """Backbone features (B, F) of a raw image batch (normalised first), float32 also under bf16 autocast:
        the gradient methods differentiate the losses with respect to them (torchjd's Jacobian comes back in
        float32, which a bf16 features tensor refuses), and FDS keeps its running statistics in float32. A
        conditioned model's input carries the instrument's settings as its last planes; they join the features
        after the backbone."""
        if self.fusion is None:
            return self.backbone(self.normalizer(x)).float()
        images, settings = self._split_settings(x)
        features = self.backbone(self.normalizer(images)).float()
        if self.image_gate is not None:
            features = features * self.image_gate
        return self.fusion(torch.cat([features, self._summary_and_settings(images, settings)], dim=1))

    def _split_settings(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return (x, None) if self.conditioning is None else split_settings(x, len(self.conditioning.keys))

    def _summary_and_settings(self, images: Tensor, settings: Tensor | None) -> Tensor:
        joined = [] if self.wedge_summary is None else [self.wedge_summary(images)]
        if self.conditioning is not None:
            joined.append(self.conditioning(settings))
        return torch.cat(joined, dim=1)

    def summary_inputs(self, x: Tensor) -> Tensor:
        """What the fusion reads beside the backbone's features (B, extras): the wedge summary and the
        instrument's settings of a raw input batch, as :meth:`encode` joins them.

        Raises:
            ValueError: the model joins nothing to its features.
        """
        if self.fusion is None:
            raise ValueError("summary_inputs: the model joins nothing to the backbone's features")
        images, settings = self._split_settings(x)
        return self._summary_and_settings(images, settings)

    def summary_fusion(self) -> nn.Sequential:
        """A copy of the fusion's part that reads :meth:`summary_inputs` (Linear(extras, F) -> activation): the
        shared features :meth:`encode` gives while the image gate is 0, without the backbone's zeroed features
        or their weights. :meth:`load_summary_fusion` writes a trained copy back.

        Raises:
            ValueError: the model has no image gate.
        """
        if self.image_gate is None:
            raise ValueError("summary_fusion: the model has no image gate")
        linear = self.fusion[0]
        part = nn.Linear(linear.in_features - self.num_features, linear.out_features).to(linear.weight)
        with torch.no_grad():
            part.weight.copy_(linear.weight[:, self.num_features :])
            part.bias.copy_(linear.bias)
        return nn.Sequential(part, copy.deepcopy(self.fusion[1]))

    def load_summary_fusion(self, part: nn.Sequential) -> None:
        """Write the weights of a :meth:`summary_fusion` copy back into the fusion."""
        linear = self.fusion[0]
        with torch.no_grad():
            linear.weight[:, self.num_features :].copy_(part[0].weight)
            linear.bias.copy_(part[0].bias)

    @property
    def instrument_keys(self) -> list[str]:
        """The instrument settings the model reads (empty: not conditioned)."""
        return [] if self.conditioning is None else list(self.conditioning.keys)

    def forward_heads(
        self,
        features: Tensor,
        targets: Mapping[str, Tensor] | None = None,
        epoch: int | None = None,
        masks: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Apply every head to shared features.

        With FDS modules attached, pass the batch's (standardised) ``targets`` (and optionally the label
        ``masks``) and the ``epoch`` while training: the features feeding that task's head are then
        recalibrated by its FDS module, which also accumulates the epoch's feature statistics. Without
        targets, or in eval mode, the heads see the raw features.
        """
        out: dict[str, Tensor] = {}
        for name, head in self.heads.items():
            task_features = features
            label = None if targets is None else targets.get(name)
            if name in self.fds and label is not None and epoch is not None:
                mask = None if masks is None else masks.get(name)
                task_features = self.fds[name](features, label, epoch, mask)
            y = head(task_features)
            out[name] = y.squeeze(-1) if name in self._regression else y
        return out

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Outputs per task: (B, K) logits or (B,) standardised regression values."""
        return self.forward_heads(self.encode(x))

    def predict(self, x: Tensor) -> dict[str, Tensor]:
        """Outputs per task as a deployed model returns them: regression values in original units,
        classification logits divided by their calibrated temperature."""
        return self.predict_scored(x)[0]

    def predict_scored(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """:meth:`predict`'s outputs and the unknown-material score of each image (B,), NaN where the model
        carries no fitted score (``ood``)."""
        features = self.encode(x)
        outputs = self.target_scaler.destandardize(self.calibration(self.forward_heads(features)))
        if self.ood is None or not self.ood.fitted:
            return outputs, torch.full((len(features),), float("nan"), device=features.device)
        return outputs, self.ood(features)

    def training_callbacks(self) -> list[FDSCallback]:
        """Callbacks the trainer must run for this model (FDS folds its feature statistics every epoch)."""
        return [FDSCallback(self)] if len(self.fds) else []

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters of the shared backbone (and of the fusion layer, which every head reads)."""
        shared = list(self.backbone.parameters())
        if self.image_gate is not None:
            shared.append(self.image_gate)
        return shared if self.fusion is None else shared + list(self.fusion.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters of one task's head."""
        if task not in self.heads:
            raise KeyError(f"task {task!r} is not a head of this model; heads: {list(self.heads)}")
        return list(self.heads[task].parameters())


def build_model(  # noqa: PLR0917 (signature fixed by the mtl contract)
    arch: str,
    in_chans: int,
    image_size: int,
    tasks: Sequence[TaskSpec],
    activation: str | None = None,
    pretrained: bool = False,
    *,
    hidden: int = HEAD_HIDDEN,
    dropout: float = HEAD_DROPOUT,
    fds_train_targets: Mapping[str, object] | None = None,
    input_transform: str | None = None,
    instrument_keys: Sequence[str] | None = None,
    wedge_summary: bool = False,
    image_gate: bool = False,
    **backbone_kwargs: object,
) -> MultiTaskModel:
    """Build backbone + heads for ``arch``.

    Args:
        arch: backbone name (see ``backbones.ARCHITECTURES``).
        in_chans: image channels.
        image_size: image side in pixels.
        tasks: task specifications.
        activation: activation for backbone and heads; None takes the model table's default.
        pretrained: timm pretrained weights.
        hidden: head hidden width.
        dropout: head dropout.
        fds_train_targets: train-split targets (standardised, NaN = missing) by task name; needed to lay out
            the FDS bins of tasks with FDS enabled (a mapping lacking such a task raises). None (rebuilding
            a trained model): placeholder bins, replaced by ``load_state_dict``.
        input_transform: a representation of ``input_transform.TRANSFORMS`` adds an :class:`InputNormalizer`
            (statistics set by its ``fit`` or by ``load_state_dict``; ``dual_energy`` widens the backbone's
            input); None feeds the raw images to the backbone.
        instrument_keys: instrument settings the model is conditioned on (:class:`InstrumentConditioning`;
            its statistics set by ``fit`` or by ``load_state_dict``); None or empty: not conditioned.
        wedge_summary: join the wedge's fitted-profile coefficients to the features (:class:`WedgeSummary`).
        image_gate: the backbone's features enter the fusion times a learned scale starting at 0.
        **backbone_kwargs: passed to ``create_backbone`` (e.g. ``vgg_pre_logits``, ``fnn_hidden``).
    """
    act = activation if activation is not None else DEFAULT_ACTIVATIONS.get(arch, "relu")
    normalizer = None if input_transform is None else InputNormalizer(in_chans, input_transform)
    backbone_chans = in_chans if normalizer is None else normalizer.out_chans
    backbone, num_features = create_backbone(
        arch, backbone_chans, act, pretrained, image_size, **backbone_kwargs
    )
    fds: dict[str, FDS] = {}
    for task in tasks:
        if task.fds is None:
            continue
        if fds_train_targets is None:
            # Rebuilding a trained model: the bin edges and statistics come with its state_dict.
            logger.info("task '%s': FDS bins left as placeholders until a state_dict is loaded", task.name)
            fds[task.name] = FDS.from_config(num_features, task.fds, np.arange(task.fds.bins + 1.0))
            continue
        if task.name not in fds_train_targets:
            raise ValueError(
                f"task '{task.name}', field 'fds': enabled, but fds_train_targets has no '{task.name}' "
                "labels to lay out its bins"
            )
        fds[task.name] = FDS.from_config(num_features, task.fds, fds_train_targets[task.name])
    conditioning = InstrumentConditioning(instrument_keys) if instrument_keys else None
    summary = WedgeSummary(in_chans) if wedge_summary else None
    return MultiTaskModel(
        backbone,
        num_features,
        tasks,
        act,
        hidden,
        dropout,
        fds,
        normalizer,
        conditioning,
        summary,
        image_gate,
    )


def load_model(bundle: Mapping[str, object]) -> MultiTaskModel:
    """Rebuild a trained model from its bundle (``arch``, ``in_chans``, ``image_size``, ``activation``,
    ``model_options``, ``tasks``, ``state_dict``), in eval mode; ``model.predict(x)`` gives original units."""
    model = build_model(
        str(bundle["arch"]),
        in_chans=int(bundle["in_chans"]),
        image_size=int(bundle["image_size"]),
        tasks=parse_tasks(bundle["tasks"]),
        activation=bundle.get("activation"),
        pretrained=False,
        **dict(bundle.get("model_options") or {}),
    )
    model.load_state_dict(bundle["state_dict"])
    return model.eval()
