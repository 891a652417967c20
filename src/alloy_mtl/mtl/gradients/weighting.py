"""Loss-weighting methods: equal (static) weights, uncertainty weighting and GradNorm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alloy_mtl.constants import CLASSIFICATION, REGRESSION

from .base import GradientMethod, StepInfo, task_gradients


class EqualWeighting(GradientMethod):
    """Weighted sum of the task losses with the static task weights; one backward pass."""

    name = "equal"

    def _backward(
        self,
        losses: list[Tensor],
        shared_params: list[Tensor],
        features: Tensor,
        task_params: Mapping[str, Sequence[Tensor]] | None,
    ) -> StepInfo:
        torch.stack(losses).sum().backward()
        return StepInfo(self.task_names, self.static_weights.to(features.device))


class UncertaintyWeighting(GradientMethod):
    """Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018).

    With learnable ``s_k = log sigma_k^2`` the objective is
    ``sum_k c_k exp(-s_k) L_k + s_k / 2`` where ``c_k = 1/2`` for regression (Gaussian likelihood) and
    ``c_k = 1`` for classification (scaled softmax). The log-variances are returned by :meth:`parameters`
    and optimised by the trainer's optimizer (no weight decay).

    Args:
        task_kinds: ``classification`` or ``regression`` per task (default regression).
        init_log_var: initial value of every ``s_k``.
    """

    name = "uncertainty"

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        task_kinds: Mapping[str, str] | None = None,
        init_log_var: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(task_names, **kwargs)
        kinds = dict(task_kinds or {})
        for task, kind in kinds.items():
            if task not in self.task_names:
                raise ValueError(
                    f"uncertainty: task_kinds names unknown task {task!r}; tasks: {self.task_names}"
                )
            if kind not in (REGRESSION, CLASSIFICATION):
                raise ValueError(
                    f"uncertainty: task_kinds[{task!r}] = {kind!r}; expected {CLASSIFICATION} or {REGRESSION}"
                )
        self.scale = torch.tensor([1.0 if kinds.get(t) == CLASSIFICATION else 0.5 for t in self.task_names])
        self.log_vars = nn.Parameter(torch.full((self.num_tasks,), float(init_log_var)))

    def parameters(self) -> list[nn.Parameter]:
        """The learnable log-variances ``s_k``."""
        return [self.log_vars]

    def to(self, device: torch.device | str) -> UncertaintyWeighting:
        """Move the log-variances (in place, so optimizer references stay valid) and constants."""
        super().to(device)
        self.scale = self.scale.to(device)
        self.log_vars.data = self.log_vars.data.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Step counter and log-variances."""
        return {**super().state_dict(), "log_vars": self.log_vars.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the step counter and log-variances in place."""
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_vars.copy_(state["log_vars"])

    def _backward(
        self,
        losses: list[Tensor],
        shared_params: list[Tensor],
        features: Tensor,
        task_params: Mapping[str, Sequence[Tensor]] | None,
    ) -> StepInfo:
        factors = self.scale * torch.exp(-self.log_vars)
        total = (factors * torch.stack(losses).float()).sum() + 0.5 * self.log_vars.sum()
        total.backward()
        return StepInfo(self.task_names, (factors * self.static_weights).detach())


class GradNorm(GradientMethod):
    """GradNorm (Chen et al., ICML 2018): learn task weights that balance gradient norms.

    Each step, with ``G_k = w_k ||grad_W L_k||`` on the reference ``W`` (the shared representation
    ``features`` by default, or the last shared weight tensor), inverse training rates
    ``r_k = (L_k / L_k(0)) / mean_j(L_j / L_j(0))`` and target ``mean(G) * r_k^alpha`` (held constant),
    the weights take one Adam step on ``sum_k |G_k - target_k|`` and are renormalised to sum to the number
    of tasks. The model gradient of the step uses the weights from before the update.

    Args:
        alpha: asymmetry; larger pulls harder toward equal training rates.
        lr: learning rate of the weights' own Adam optimizer.
        reference: ``features`` (cheap: heads only) or ``last_shared`` (last shared tensor with ndim >= 2).
    """

    name = "gradnorm"

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        alpha: float = 1.5,
        lr: float = 0.025,
        reference: str = "features",
        **kwargs: Any,
    ) -> None:
        super().__init__(task_names, **kwargs)
        if reference not in ("features", "last_shared"):
            raise ValueError(f"gradnorm: reference must be 'features' or 'last_shared', got {reference!r}")
        if alpha < 0 or lr <= 0:
            raise ValueError(f"gradnorm: expected alpha >= 0 and lr > 0, got alpha={alpha}, lr={lr}")
        self.alpha = float(alpha)
        self.reference = reference
        self.weights = torch.ones(self.num_tasks, requires_grad=True)
        self.initial_losses: Tensor | None = None
        self.optimizer = torch.optim.Adam([self.weights], lr=lr)

    def to(self, device: torch.device | str) -> GradNorm:
        """Move the weights in place (keeps the internal optimizer valid)."""
        super().to(device)
        self.weights.data = self.weights.data.to(device)
        if self.initial_losses is not None:
            self.initial_losses = self.initial_losses.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Step counter, weights, initial losses and the weights' optimizer state."""
        return {
            **super().state_dict(),
            "weights": self.weights.detach().cpu().clone(),
            "initial_losses": None if self.initial_losses is None else self.initial_losses.cpu().clone(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        super().load_state_dict(state)
        with torch.no_grad():
            self.weights.copy_(state["weights"])
        initial = state["initial_losses"]
        self.initial_losses = None if initial is None else initial.to(self.weights.device)
        self.optimizer.load_state_dict(state["optimizer"])

    def _reference(self, shared_params: list[Tensor], features: Tensor) -> Tensor:
        if self.reference == "features":
            return features
        candidates = [p for p in shared_params if p.ndim >= 2 and p.requires_grad]
        if not candidates:
            raise ValueError("gradnorm: reference 'last_shared' needs a shared parameter with ndim >= 2")
        return candidates[-1]

    def _backward(
        self,
        losses: list[Tensor],
        shared_params: list[Tensor],
        features: Tensor,
        task_params: Mapping[str, Sequence[Tensor]] | None,
    ) -> StepInfo:
        reference = self._reference(shared_params, features)
        grads = [task_gradients(loss, [reference])[0].detach().float() for loss in losses]
        current = torch.stack(losses).detach().float()
        if self.sync is None:
            grad_norms = torch.stack([grad.norm() for grad in grads])
        elif reference is features:
            # rank r holds rows (1/b) dl_i/df_i of the global (1/B) dl_i/df_i, B = world * b:
            # |global|^2 = sum_r |local_r|^2 / world^2 = mean_r |local_r|^2 / world
            squares = torch.stack([grad.square().sum() for grad in grads])
            self._average_([squares, current])
            grad_norms = (squares / self.sync.world_size).sqrt()
        else:
            self._average_([*grads, current])
            grad_norms = torch.stack([grad.norm() for grad in grads])
        weights_used = self.weights.detach().clone()

        with torch.no_grad():
            if self.initial_losses is None:
                self.initial_losses = current.clone()
            else:  # a task without labels in the first batches gets its first non-zero loss as L(0)
                self.initial_losses = torch.where(self.initial_losses > 0, self.initial_losses, current)
            ratio = torch.where(
                self.initial_losses > 0, current / self.initial_losses, torch.ones_like(current)
            )
            inverse_rate = ratio / ratio.mean().clamp_min(1e-12)
            weighted_norms = weights_used * grad_norms
            target = weighted_norms.mean() * inverse_rate**self.alpha
            # d/dw_k sum_j |w_j n_j - target_j| with target held constant
            self.weights.grad = torch.sign(weighted_norms - target) * grad_norms
        self.optimizer.step()
        with torch.no_grad():
            self.weights.clamp_(min=1e-4)
            self.weights.mul_(self.num_tasks / self.weights.sum())
        self.weights.grad = None

        total = (weights_used.to(current.dtype) * torch.stack(losses).float()).sum()
        total.backward()
        return StepInfo(self.task_names, weights_used * self.static_weights)
