"""Feature extractors (backbones): timm CNNs and a small MLP on the downsampled image.

Every backbone maps a (B, C, H, W) image batch to (B, F) features; ``create_backbone`` returns the module
and F. Activations follow the reference study's model table (``DEFAULT_ACTIVATIONS``); they are set with
timm's ``act_layer`` and, should a model ignore it, swapped module by module (``replace_activations``).

The registrations below are the one home of the architectures: each one's name, builder, reference
activation and start priority. ``ARCHITECTURES`` (and through it the ``train_<arch>``/``tune_<arch>``
pipelines and the default runner's worker cap) derive from them, and a test checks that the YAML
namespaces (``<arch>.train_options``, the catalog, kubeflow.yml's resources) name exactly these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import timm
import timm.layers.activations as timm_act
from torch import Tensor, nn

from alloy_mtl.config.registry import Registry

logger = logging.getLogger(__name__)

#: Architecture name -> backbone builder ``(in_chans, activation, pretrained, image_size, **options)``
#: returning ``(module, F)``; its keyword options are the ``model_options`` a configuration may set. Each
#: entry's info holds its ``activation`` and ``start_priority`` (see :func:`_architecture`).
BACKBONES: Registry[tuple[nn.Module, int]] = Registry(
    "architecture", supplied=("in_chans", "activation", "pretrained", "image_size")
)
_Builder = Callable[..., tuple[nn.Module, int]]

# Module classes that implement each supported activation; the first one is what we build (it must
# accept ``inplace=`` because timm constructs ``act_layer(inplace=True)``).
_ACTIVATION_TYPES: dict[str, tuple[type[nn.Module], ...]] = {
    "relu": (nn.ReLU,),
    "leaky_relu": (nn.LeakyReLU,),
    "gelu": (timm_act.GELU, nn.GELU),
    "silu": (nn.SiLU, timm_act.Swish),
}
_ALIASES = {"leakyrelu": "leaky_relu", "swish": "silu"}

# Other elementwise activations a backbone may contain. Sigmoid/Tanh are left out on purpose: in
# timm they are gates (squeeze-excitation), not the network's activation, and must not be swapped.
_OTHER_ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU6,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.PReLU,
    nn.Hardswish,
    nn.Mish,
    timm_act.HardSwish,
    timm_act.Mish,
    timm_act.GELUTanh,
    timm_act.QuickGELU,
    timm_act.PReLU,
)

# Spatial reduction of VGG's five max-pool stages: smaller images pool down to zero.
_VGG_MIN_IMAGE_SIZE = 32


def canonical_activation(name: str) -> str:
    """Normalise an activation name (``ReLU``, ``LeakyReLU``, ``leaky_relu``, ``swish`` ...) to its key.

    Raises:
        ValueError: for an unsupported activation.
    """
    if not isinstance(name, str):
        raise ValueError(f"activation: expected a name, got {name!r}")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _ACTIVATION_TYPES:
        raise ValueError(f"activation: unknown {name!r}; expected one of {sorted(_ACTIVATION_TYPES)}")
    return key


def activation_layer(name: str) -> type[nn.Module]:
    """The activation class for ``name`` (accepts ``inplace=``, as timm's ``act_layer`` requires)."""
    return _ACTIVATION_TYPES[canonical_activation(name)][0]


def make_activation(name: str) -> nn.Module:
    """A fresh (not in-place) activation module for ``name``."""
    return activation_layer(name)()


def _activation_key(module: nn.Module) -> str | None:
    for key, types in _ACTIVATION_TYPES.items():
        if isinstance(module, types):
            return key
    if isinstance(module, _OTHER_ACTIVATION_TYPES):
        return type(module).__name__.lower()
    return None


def activation_names(module: nn.Module) -> set[str]:
    """Names of the activation kinds present in ``module`` (gates such as Sigmoid are not counted)."""
    return {key for m in module.modules() if (key := _activation_key(m)) is not None}


def replace_activations(module: nn.Module, name: str) -> int:
    """Replace, in place, every activation module of another kind by ``name``'s activation.

    Returns:
        The number of modules replaced.
    """
    target = canonical_activation(name)
    replaced = 0
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            key = _activation_key(child)
            if key is not None and key != target:
                setattr(parent, child_name, make_activation(target))
                replaced += 1
    return replaced


class FNNBackbone(nn.Module):
    """MLP on the flattened image after adaptive average pooling to ``pool_size`` x ``pool_size``.

    Args:
        in_chans: image channels.
        pool_size: side of the pooled image.
        hidden: widths of the hidden layers; the last one is the feature size.
        activation: activation name.
        dropout: dropout after each hidden layer (0 disables it).
    """

    def __init__(
        self,
        in_chans: int,
        pool_size: int = 16,
        hidden: Sequence[int] = (1024, 512),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"fnn_hidden: expected a non-empty list of positive widths, got {list(hidden)}")
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(pool_size), nn.Flatten()]
        width = in_chans * pool_size * pool_size
        for h in hidden:
            layers += [nn.Linear(width, int(h)), make_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        self.net = nn.Sequential(*layers)
        self.num_features = width

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C, H, W) images to (B, F) features."""
        return self.net(x)


def _timm_backbone(
    name: str, in_chans: int, activation: str, pretrained: bool, vgg_pre_logits: bool, **timm_kwargs: object
) -> tuple[nn.Module, int]:
    light_vgg = name == "vgg16" and not vgg_pre_logits
    if light_vgg and not pretrained:
        # The pre-logits are dropped below; a 1-wide ConvMlp skips initialising ~120M unused weights.
        timm_kwargs = {"mlp_ratio": 1 / 4096, **timm_kwargs}
    model = timm.create_model(
        name,
        pretrained=pretrained,
        num_classes=0,
        in_chans=in_chans,
        act_layer=activation_layer(activation),
        **timm_kwargs,
    )
    if light_vgg:
        # timm's VGG keeps a 7x7-conv ConvMlp (512 -> 4096 -> 4096, ~120M parameters) as pre-logits even
        # with num_classes=0; the light variant global-average-pools the conv features instead.
        model.pre_logits = nn.Identity()
        model.head_hidden_size = model.num_features
    num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return model, num_features


def _checked_timm_backbone(
    name: str, in_chans: int, activation: str, pretrained: bool, vgg_pre_logits: bool, **timm_kwargs: object
) -> tuple[nn.Module, int]:
    model, num_features = _timm_backbone(
        name, in_chans, activation, pretrained, vgg_pre_logits, **timm_kwargs
    )
    if activation_names(model) != {activation}:
        replaced = replace_activations(model, activation)
        logger.info(
            "%s: act_layer not honoured everywhere; swapped %d activation modules to %s",
            name,
            replaced,
            activation,
        )
    return model, num_features


def _architecture(name: str, *, activation: str, start_priority: int) -> Callable[[_Builder], _Builder]:
    """Register a backbone builder as an architecture of ``train_all``.

    Args:
        name: the architecture, also its Kedro namespace and YAML section.
        activation: its activation in the reference study's model table (the default of ``activation``).
        start_priority: which training the default runner (``alloy_mtl.runner.ModelParallelRunner``) starts
            first when more are ready than it has workers, highest first (tagged ``priority_<n>`` on the
            node). With the CPU default's costs (one thread each, two trainings at a time, warm-up and fitting
            after training included: VGG16 ~300 s, ResNet50 ~270, the FNN ~200, EfficientNet-B0 ~150, ResNet34
            ~120, ResNet18 ~90), the costliest start first (longest-processing-time order), so the two workers
            finish train_all's trainings close together; another order changes the wall time only.
    """
    if isinstance(start_priority, bool) or not isinstance(start_priority, int) or start_priority < 1:
        raise ValueError(f"start_priority of {name!r}: expected an integer >= 1, got {start_priority!r}")
    return BACKBONES.register(
        name, activation=canonical_activation(activation), start_priority=start_priority
    )


def _register_timm(name: str, activation: str, start_priority: int) -> None:
    def build(
        in_chans: int, activation: str, pretrained: bool, image_size: int, *, drop_rate: float = 0.0
    ) -> tuple[nn.Module, int]:
        return _checked_timm_backbone(name, in_chans, activation, pretrained, False, drop_rate=drop_rate)

    _architecture(name, activation=activation, start_priority=start_priority)(build)


_register_timm("resnet18", activation="relu", start_priority=1)
_register_timm("resnet34", activation="leaky_relu", start_priority=2)
_register_timm("resnet50", activation="gelu", start_priority=5)


@_architecture("vgg16", activation="relu", start_priority=6)
def _vgg16(
    in_chans: int,
    activation: str,
    pretrained: bool,
    image_size: int,
    *,
    vgg_pre_logits: bool = True,
    vgg_batch_norm: bool = False,
    drop_rate: float = 0.0,
) -> tuple[nn.Module, int]:
    """VGG16; ``vgg_pre_logits`` keeps timm's 4096-wide ConvMlp (faithful, F=4096), False global-average-pools
    the conv features instead (F=512, ~9x fewer parameters). ``vgg_batch_norm`` puts BatchNorm after every
    convolution (VGG16-BN, timm's ``vgg16_bn`` layout), which trains in far fewer steps; the reference has none."""
    if image_size < _VGG_MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size: vgg16 needs images of at least {_VGG_MIN_IMAGE_SIZE} px, got {image_size}"
        )
    if vgg_batch_norm and pretrained:
        raise ValueError("vgg_batch_norm: the pretrained VGG16 weights have no BatchNorm; choose one")
    norm: dict[str, object] = {"norm_layer": nn.BatchNorm2d} if vgg_batch_norm else {}
    return _checked_timm_backbone(
        "vgg16", in_chans, activation, pretrained, vgg_pre_logits, drop_rate=drop_rate, **norm
    )


_register_timm("efficientnet_b0", activation="silu", start_priority=3)


@_architecture("fnn", activation="relu", start_priority=4)
def _fnn(
    in_chans: int,
    activation: str,
    pretrained: bool,
    image_size: int,
    *,
    fnn_pool_size: int = 16,
    fnn_hidden: Sequence[int] = (1024, 512),
    fnn_dropout: float = 0.0,
) -> tuple[nn.Module, int]:
    """MLP on the image average-pooled to ``fnn_pool_size`` (capped at ``image_size``); F = last width."""
    if pretrained:
        raise ValueError("pretrained: no pretrained weights exist for the 'fnn' backbone")
    fnn = FNNBackbone(in_chans, min(fnn_pool_size, image_size), fnn_hidden, activation, fnn_dropout)
    return fnn, fnn.num_features


ARCHITECTURES: tuple[str, ...] = BACKBONES.names
"""The registered architectures, in registration order: one ``train_<arch>`` pipeline each."""

DEFAULT_ACTIVATIONS: dict[str, str] = {name: BACKBONES.info(name)["activation"] for name in ARCHITECTURES}
"""Activation per architecture, from the reference study's model table."""


def create_backbone(
    name: str,
    in_chans: int,
    activation: str | None = None,
    pretrained: bool = False,
    image_size: int = 32,
    **options: object,
) -> tuple[nn.Module, int]:
    """Build a backbone mapping (B, in_chans, H, W) images to (B, F) features.

    Args:
        name: one of ``ARCHITECTURES`` (the keys of :data:`BACKBONES`).
        in_chans: image channels (energy channels), >= 1.
        activation: activation name; None takes the architecture's default from the model table.
        pretrained: load timm's pretrained weights (downloads; not available for ``fnn``).
        image_size: image side in pixels (sets the FNN input size; VGG needs >= 32).
        **options: the architecture's own options (``BACKBONES.accepted(name)``), e.g. ``vgg_pre_logits``,
            ``fnn_hidden``, ``drop_rate``.

    Returns:
        ``(module, F)``.

    Raises:
        ValueError: unknown architecture, option or activation, bad channel count or image size.
    """
    if name not in BACKBONES:
        raise ValueError(f"architecture: unknown {name!r}; expected one of {ARCHITECTURES}")
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans: expected an integer >= 1, got {in_chans!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size: expected a positive integer, got {image_size!r}")
    act = canonical_activation(activation if activation is not None else DEFAULT_ACTIVATIONS[name])
    return BACKBONES.build(name, in_chans, act, pretrained, image_size, **options)
