"""Masked, imbalance-aware task losses and the class-balanced sampler."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alloy_mtl.mtl.loading.samplers import class_balanced_sampler, class_balanced_weights_per_sample
from alloy_mtl.mtl.losses.task_losses import (
    BalancedSoftmaxLoss,
    ClassBalancedFocalLoss,
    CrossEntropyTaskLoss,
    LogitAdjustedLoss,
    RegressionLoss,
    adjusted_logits,
    build_task_losses,
    class_balanced_weights,
    class_counts,
    class_log_prior,
    masked_task_losses,
    weighted_total,
)
from alloy_mtl.mtl.tasks import parse_tasks

COUNTS = np.array([6, 3, 1])
LOG_PRIOR = np.log(COUNTS / COUNTS.sum())
NAN = float("nan")


def _all_losses() -> list[nn.Module]:
    lds_task = parse_tasks(
        {"t": {"kind": "regression", "lds": {"bins": 4, "kernel_size": 3, "reweight": "inv"}}}
    )
    (lds_loss,) = build_task_losses(lds_task, {"t": np.array([0.0, 0.1, 0.2, 1.0, 2.0])}).values()
    return [
        CrossEntropyTaskLoss("c", 3),
        LogitAdjustedLoss("c", 3, LOG_PRIOR, tau=1.0),
        BalancedSoftmaxLoss("c", 3, LOG_PRIOR),
        ClassBalancedFocalLoss("c", 3, COUNTS, beta=0.9, gamma=2.0),
        RegressionLoss("r", "mse"),
        RegressionLoss("r", "l1"),
        RegressionLoss("r", "huber", delta=0.5),
        lds_loss,
    ]


def _head_and_batch(loss: nn.Module) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(6, 4, generator=g)
    if isinstance(loss, RegressionLoss):
        head = nn.Linear(4, 1)
        target = torch.tensor([0.3, -1.0, 2.5, 0.0, 1.1, 0.7])
    else:
        head = nn.Linear(4, 3)
        target = torch.tensor([0, 2, 1, 0, 2, 1])
    return head, features, target


def _forward(head: nn.Linear, features: torch.Tensor, regression: bool) -> torch.Tensor:
    out = head(features)
    return out.squeeze(-1) if regression else out


@pytest.mark.parametrize("loss", _all_losses(), ids=lambda m: f"{type(m).__name__}-{getattr(m, 'kind', '')}")
def test_no_label_in_batch_gives_exact_zero_and_zero_grad(loss: nn.Module) -> None:
    regression = isinstance(loss, RegressionLoss)
    torch.manual_seed(0)
    head, features, target = _head_and_batch(loss)
    # Missing labels carry their sentinel (NaN / -1) and the mask is all False.
    target = torch.full_like(target, NAN) if regression else torch.full_like(target, -1)
    value = loss(_forward(head, features, regression), target, torch.zeros(6, dtype=torch.bool))
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(head.weight.grad, torch.zeros_like(head.weight))
    assert torch.equal(head.bias.grad, torch.zeros_like(head.bias))


@pytest.mark.parametrize("loss", _all_losses(), ids=lambda m: f"{type(m).__name__}-{getattr(m, 'kind', '')}")
def test_masked_batch_equals_loss_on_labelled_subset(loss: nn.Module) -> None:
    regression = isinstance(loss, RegressionLoss)
    torch.manual_seed(0)
    head, features, target = _head_and_batch(loss)
    mask = torch.tensor([True, False, True, True, False, True])
    # Masked-out entries hold garbage that must not leak into the loss.
    garbage = target.clone()
    garbage[~mask] = torch.tensor(NAN) if regression else torch.tensor(-1)
    full = loss(_forward(head, features, regression), garbage, mask)
    full.backward()
    grad_full = head.weight.grad.clone()
    head.zero_grad()
    subset = loss(_forward(head, features[mask], regression), target[mask], torch.ones(4, dtype=torch.bool))
    subset.backward()
    assert full.item() == pytest.approx(subset.item(), rel=1e-6)
    assert torch.allclose(grad_full, head.weight.grad, atol=1e-7)
    assert full.item() > 0


def test_missing_sentinel_is_masked_even_without_mask() -> None:
    pred = torch.tensor([1.0, 5.0, 3.0])
    assert RegressionLoss("r", "mse")(pred, torch.tensor([0.0, NAN, 1.0])).item() == pytest.approx(
        (1 + 4) / 2
    )
    logits = torch.zeros(2, 3)
    assert CrossEntropyTaskLoss("c", 3)(logits, torch.tensor([1, -1])).item() == pytest.approx(math.log(3))


def test_cross_entropy_matches_torch() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    target = torch.tensor([0, 2])
    assert torch.allclose(CrossEntropyTaskLoss("c", 3)(logits, target), F.cross_entropy(logits, target))


def test_balanced_softmax_by_hand() -> None:
    # Equal logits, prior (0.75, 0.25), label 1: -log(0.25 / (0.75 + 0.25)) = log 4.
    loss = BalancedSoftmaxLoss("c", 2, np.log([0.75, 0.25]))
    assert loss(torch.zeros(1, 2), torch.tensor([1])).item() == pytest.approx(math.log(4), rel=1e-6)
    logits = torch.tensor([[1.0, -0.5, 0.2], [0.0, 2.0, -1.0]])
    target = torch.tensor([2, 0])
    expected = F.cross_entropy(logits + torch.tensor(LOG_PRIOR, dtype=torch.float32), target)
    assert torch.allclose(BalancedSoftmaxLoss("c", 3, LOG_PRIOR)(logits, target), expected)


def test_logit_adjusted_reduces_to_ce_and_balanced_softmax() -> None:
    logits = torch.tensor([[1.0, -0.5, 0.2], [0.0, 2.0, -1.0]])
    target = torch.tensor([2, 0])
    la0 = LogitAdjustedLoss("c", 3, LOG_PRIOR, tau=0.0)(logits, target)
    assert torch.allclose(la0, F.cross_entropy(logits, target))
    la1 = LogitAdjustedLoss("c", 3, LOG_PRIOR, tau=1.0)(logits, target)
    assert torch.allclose(la1, BalancedSoftmaxLoss("c", 3, LOG_PRIOR)(logits, target))
    la2 = LogitAdjustedLoss("c", 3, LOG_PRIOR, tau=2.0)(logits, target)
    assert torch.allclose(
        la2, F.cross_entropy(logits + 2 * torch.tensor(LOG_PRIOR, dtype=torch.float32), target)
    )


def test_post_hoc_adjustment_picks_tail_class_on_equal_logits() -> None:
    log_prior = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    adjusted = adjusted_logits(torch.zeros(1, 3), log_prior, tau=1.0)
    assert adjusted.argmax(-1).item() == 2
    assert torch.allclose(adjusted, -log_prior[None])


def _blobs(n_head: int, n_tail: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.cat([torch.randn(n_head, 2, generator=g), torch.randn(n_tail, 2, generator=g) + 2.0])
    y = torch.cat([torch.zeros(n_head, dtype=torch.long), torch.ones(n_tail, dtype=torch.long)])
    return x, y


def test_logit_adjusted_training_raises_tail_recall() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = _blobs(950, 50, g)
    x_test, y_test = _blobs(500, 500, g)
    counts = class_counts(y.numpy(), 2)
    recall = {}
    for name, loss in [
        ("ce", CrossEntropyTaskLoss("a", 2)),
        ("la", LogitAdjustedLoss("a", 2, class_log_prior(counts), tau=1.0)),
    ]:
        torch.manual_seed(0)
        model = nn.Linear(2, 2)
        opt = torch.optim.Adam(model.parameters(), lr=0.1)
        for _ in range(60):
            opt.zero_grad()
            loss(model(x), y).backward()
            opt.step()
        pred = loss.prediction_logits(model(x_test)).argmax(-1)
        recall[name] = ((pred == 1) & (y_test == 1)).sum().item() / 500
    assert recall["la"] > recall["ce"] + 0.2, recall


def test_cb_weights_by_hand_on_two_classes() -> None:
    beta = 0.9
    raw = np.array([(1 - beta) / (1 - beta**90), (1 - beta) / (1 - beta**10)])
    expected = 2 * raw / raw.sum()
    assert np.allclose(class_balanced_weights(np.array([90, 10]), beta), expected)
    assert expected[1] > expected[0]
    assert np.allclose(class_balanced_weights(np.array([90, 10]), 0.0), [1.0, 1.0])


def test_cb_focal_by_hand() -> None:
    counts = np.array([90, 10])
    loss = ClassBalancedFocalLoss("c", 2, counts, beta=0.9, gamma=2.0)
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = (0.25, 0.75)
    w = class_balanced_weights(counts, 0.9)
    assert loss(logits, torch.tensor([1])).item() == pytest.approx(w[1] * 0.25**2 * -math.log(0.75), rel=1e-5)
    assert loss(logits, torch.tensor([0])).item() == pytest.approx(w[0] * 0.75**2 * -math.log(0.25), rel=1e-5)


def test_focal_with_gamma_0_and_beta_0_is_cross_entropy() -> None:
    logits = torch.tensor([[1.0, -0.5, 0.2], [0.0, 2.0, -1.0], [0.3, 0.3, 0.3]], requires_grad=True)
    target = torch.tensor([2, 0, 1])
    focal = ClassBalancedFocalLoss("c", 3, COUNTS, beta=0.0, gamma=0.0)(logits, target)
    assert torch.allclose(focal, F.cross_entropy(logits, target))
    (grad,) = torch.autograd.grad(focal, logits)
    assert torch.isfinite(grad).all()


def test_regression_losses_by_hand() -> None:
    pred = torch.tensor([0.0, 2.0])
    target = torch.tensor([1.0, 0.0])
    assert RegressionLoss("r", "mse")(pred, target).item() == pytest.approx((1 + 4) / 2)
    assert RegressionLoss("r", "l1")(pred, target).item() == pytest.approx((1 + 2) / 2)
    # Huber, delta 1: 0.5 * 1^2 and 1 * (2 - 0.5).
    assert RegressionLoss("r", "huber", delta=1.0)(pred, target).item() == pytest.approx((0.5 + 1.5) / 2)


def test_lds_weights_scale_per_sample_losses() -> None:
    tasks = parse_tasks(
        {"t": {"kind": "regression", "loss": "l1", "lds": {"bins": 2, "kernel_size": 1, "reweight": "inv"}}}
    )
    loss = build_task_losses(tasks, {"t": np.array([0.0, 0.1, 0.2, 1.0])})["t"]
    # Bin weights 2/3 (three labels near 0) and 2 (one label near 1); see test_lds.
    pred = torch.zeros(2)
    target = torch.tensor([0.1, 1.0])
    assert loss(pred, target).item() == pytest.approx((2 / 3 * 0.1 + 2 * 1.0) / 2, rel=1e-6)


def test_build_task_losses_from_specs() -> None:
    tasks = parse_tasks(
        {
            "alloy": {
                "kind": "classification",
                "target": "alloy",
                "num_outputs": 3,
                "loss": "logit_adjusted",
                "loss_params": {"tau": 0.5},
            },
            "cb": {"kind": "classification", "target": "alloy", "num_outputs": 3, "loss": "cb_focal"},
            "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "huber"},
        }
    )
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, -1])
    losses = build_task_losses(tasks, {"alloy": labels})  # "cb" found through its target column
    assert isinstance(losses["alloy"], LogitAdjustedLoss) and losses["alloy"].tau == 0.5
    assert torch.allclose(losses["alloy"].log_prior, torch.tensor(LOG_PRIOR, dtype=torch.float32))
    assert torch.allclose(
        losses["cb"].class_weights, torch.tensor(class_balanced_weights(COUNTS, 0.999), dtype=torch.float32)
    )
    assert isinstance(losses["thickness"], RegressionLoss) and losses["thickness"].kind == "huber"
    with pytest.raises(ValueError, match="task 'alloy'.*train_targets"):
        build_task_losses(tasks[:1], {})
    with pytest.raises(ValueError, match="out of range"):
        build_task_losses(tasks[:1], {"alloy": np.array([0, 3])})

    preds = {"alloy": torch.zeros(2, 3), "cb": torch.zeros(2, 3), "thickness": torch.tensor([1.0, 0.0])}
    targets = {
        "alloy": torch.tensor([0, -1]),
        "cb": torch.tensor([0, 1]),
        "thickness": torch.tensor([0.0, NAN]),
    }
    per_task = masked_task_losses(losses, preds, targets, {"cb": torch.tensor([False, False])})
    assert per_task["cb"].item() == 0.0
    assert per_task["thickness"].item() == pytest.approx(0.5)
    tasks_weighted = [tasks[0], tasks[2]]
    total = weighted_total(per_task, tasks_weighted)
    assert total.item() == pytest.approx(per_task["alloy"].item() + per_task["thickness"].item())


def test_class_balanced_sampler_balances_and_is_seeded() -> None:
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5 + [-1] * 20)
    weights = class_balanced_weights_per_sample(labels)
    # 100 labelled samples share mass 100 equally over 3 classes; unlabelled keep weight 1.
    for c, n in [(0, 80), (1, 15), (2, 5)]:
        assert weights[labels == c].sum() == pytest.approx(100 / 3)
        assert np.allclose(weights[labels == c], 100 / (3 * n))
    assert np.all(weights[labels == -1] == 1.0)
    draws_a = list(class_balanced_sampler(labels, torch.Generator().manual_seed(3), num_samples=6000))
    draws_b = list(class_balanced_sampler(labels, torch.Generator().manual_seed(3), num_samples=6000))
    assert draws_a == draws_b
    drawn = labels[np.array(draws_a)]
    share = np.array([(drawn == c).mean() for c in (0, 1, 2, -1)])
    assert np.allclose(share, [100 / 360, 100 / 360, 100 / 360, 20 / 120], atol=0.03)
    assert len(class_balanced_sampler(labels)) == len(labels)
