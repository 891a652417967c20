"""Gradient methods: hand-computed PCGrad projections, GradNorm/uncertainty dynamics, torchjd, diagnostics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from alloy_mtl.mtl.gradients import (
    EpochDiagnostics,
    StepInfo,
    build_gradient_method,
    pcgrad_combine,
)


class IdentityToy:
    """Shared parameter ``p`` (D,), features = ``p`` as a batch of one (the shared part is the identity),
    head scalars ``h_k``; task loss ``L_k = h_k * (features . c_k)``.

    So the shared gradient of task k is ``h_k c_k`` and the head gradient is ``features . c_k``.
    """

    def __init__(self, directions: list[list[float]], point: list[float]) -> None:
        self.names = [f"t{k}" for k in range(len(directions))]
        self.c = torch.tensor(directions)
        self.p = nn.Parameter(torch.tensor(point))
        self.h = {n: nn.Parameter(torch.tensor(1.0)) for n in self.names}

    def forward(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        features = self.p[None] * 1.0
        losses = {n: self.h[n] * (features[0] @ self.c[k]) for k, n in enumerate(self.names)}
        return losses, features

    def task_params(self) -> dict[str, list[nn.Parameter]]:
        return {n: [self.h[n]] for n in self.names}


def test_pcgrad_combine_projects_conflicting_pair_exactly() -> None:
    # g1.g2 = -1: g1' = g1 - (-1/2) g2 = [0.5, 0.5]; g2' = g2 - (-1/1) g1 = [0, 1]; sum [0.5, 1.5]
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    combined = pcgrad_combine(grads, torch.Generator().manual_seed(0))
    assert torch.allclose(combined, torch.tensor([0.5, 1.5]))
    # each projected gradient is orthogonal to the other task's original gradient
    assert float(torch.tensor([0.5, 0.5]) @ grads[1]) == 0.0
    assert float(torch.tensor([0.0, 1.0]) @ grads[0]) == 0.0


def test_pcgrad_combine_leaves_non_conflicting_gradients_unchanged() -> None:
    grads = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    assert torch.equal(pcgrad_combine(grads, torch.Generator().manual_seed(3)), grads.sum(0))


def test_pcgrad_three_tasks_result_depends_only_on_seeded_order() -> None:
    grads = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.5, -1.0, 1.0]])
    a = pcgrad_combine(grads, torch.Generator().manual_seed(7))
    b = pcgrad_combine(grads, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_pcgrad_gramian_form_equals_direct_vector_projection() -> None:
    torch.manual_seed(2)
    grads = torch.randn(4, 50, dtype=torch.float64)
    grads[1] -= 1.5 * grads[0]  # make conflicts likely
    expected = []
    gen = torch.Generator().manual_seed(5)
    for i in range(4):  # the paper's loop on vectors
        g = grads[i].clone()
        for j in torch.randperm(4, generator=gen).tolist():
            if j != i and g @ grads[j] < 0:
                g = g - (g @ grads[j]) / (grads[j] @ grads[j]) * grads[j]
        expected.append(g)
    combined = pcgrad_combine(grads, torch.Generator().manual_seed(5))
    assert torch.allclose(combined.double(), torch.stack(expected).sum(0), atol=1e-5)


@pytest.mark.parametrize("name", ["pcgrad", "pcgrad_fast"])
def test_pcgrad_methods_fill_shared_and_head_grads(name: str) -> None:
    toy = IdentityToy([[1.0, 0.0], [-1.0, 1.0]], point=[2.0, 3.0])
    method = build_gradient_method(name, toy.names, {"diagnostics_every": 0})
    losses, features = toy.forward()
    info = method.backward(losses, [toy.p], features, toy.task_params())
    assert torch.allclose(toy.p.grad, torch.tensor([0.5, 1.5]))
    # heads get their own task gradient: dL_k/dh_k = features . c_k = 2 and -2 + 3 = 1
    assert float(toy.h["t0"].grad) == 2.0
    assert float(toy.h["t1"].grad) == 1.0
    assert info.weights.tolist() == [1.0, 1.0]


def test_pcgrad_fast_equals_exact_when_shared_part_is_identity() -> None:
    directions = [[1.0, -2.0, 0.5], [-1.0, 1.0, 1.0], [0.3, 0.2, -1.0]]
    results = {}
    for name in ("pcgrad", "pcgrad_fast"):
        toy = IdentityToy(directions, point=[1.0, 2.0, 3.0])
        method = build_gradient_method(name, toy.names, {"seed": 11, "diagnostics_every": 0})
        losses, features = toy.forward()
        method.backward(losses, [toy.p], features)  # head parameters discovered from the graph
        results[name] = (toy.p.grad.clone(), [toy.h[n].grad.clone() for n in toy.names])
    assert torch.allclose(results["pcgrad"][0], results["pcgrad_fast"][0], atol=1e-6)
    for a, b in zip(results["pcgrad"][1], results["pcgrad_fast"][1], strict=True):
        assert torch.equal(a, b)


def test_pcgrad_reports_cosines_every_step_and_detects_conflict() -> None:
    toy = IdentityToy([[1.0, 0.0], [-1.0, 1.0]], point=[2.0, 3.0])
    method = build_gradient_method("pcgrad", toy.names, {"diagnostics_every": 0})
    losses, features = toy.forward()
    info = method.backward(losses, [toy.p], features, toy.task_params())
    assert info.diagnosed
    assert info.cosine_dict() == pytest.approx({"t0__t1": -1 / math.sqrt(2)})
    assert bool(info.conflict())


def test_diagnostics_cosine_hand_value_and_cadence_for_equal_weighting() -> None:
    toy = IdentityToy([[1.0, 0.0], [1.0, 1.0]], point=[2.0, 3.0])
    method = build_gradient_method("equal", toy.names, {"diagnostics_every": 2})
    diagnosed = []
    for _ in range(4):
        toy.p.grad = None
        losses, features = toy.forward()
        info = method.backward(losses, [toy.p], features)
        diagnosed.append(info.diagnosed)
        if info.diagnosed:
            assert info.cosine_dict()["t0__t1"] == pytest.approx(1 / math.sqrt(2))
            assert not bool(info.conflict())
    assert diagnosed == [True, False, True, False]


def test_diagnostics_disabled_with_zero() -> None:
    toy = IdentityToy([[1.0, 0.0], [1.0, 1.0]], point=[2.0, 3.0])
    method = build_gradient_method("equal", toy.names, {"diagnostics_every": 0})
    losses, features = toy.forward()
    assert not method.backward(losses, [toy.p], features).diagnosed


def test_equal_weighting_equals_weighted_summed_backward() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 4)
    shared = nn.Linear(4, 3)
    heads = nn.ModuleDict({"a": nn.Linear(3, 1), "b": nn.Linear(3, 2)})

    def losses() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        features = torch.tanh(shared(x))
        return {"a": heads["a"](features).pow(2).mean(), "b": heads["b"](features).abs().mean()}, features

    values, _ = losses()
    (2.0 * values["a"] + 0.5 * values["b"]).backward()
    expected = [p.grad.clone() for p in [*shared.parameters(), *heads.parameters()]]
    for p in [*shared.parameters(), *heads.parameters()]:
        p.grad = None
    method = build_gradient_method("equal", ["a", "b"], {"task_weights": {"a": 2.0, "b": 0.5}})
    values, features = losses()
    info = method.backward(values, list(shared.parameters()), features)
    got = [p.grad for p in [*shared.parameters(), *heads.parameters()]]
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(e, g)
    assert info.weights_dict() == {"a": 2.0, "b": 0.5}


def test_upgrad_direction_does_not_conflict_with_any_task() -> None:
    torch.manual_seed(1)
    directions = torch.randn(3, 5)
    directions[1] = -0.8 * directions[0] + 0.3 * torch.randn(5)  # a strong conflict
    toy = IdentityToy(directions.tolist(), point=[1.0] * 5)
    method = build_gradient_method("upgrad", toy.names, {})
    losses, features = toy.forward()
    info = method.backward(losses, [toy.p], features, toy.task_params())
    direction = toy.p.grad
    inner = directions @ direction
    assert (inner >= -1e-5).all(), inner
    assert bool(info.conflict())  # the per-task gradients do conflict
    assert info.weights.shape == (3,) and (info.weights > 0).all()
    for k, n in enumerate(toy.names):  # heads keep their own task gradient
        assert float(toy.h[n].grad) == pytest.approx(float(directions[k].sum()), rel=1e-5)


def test_upgrad_hand_case_averages_the_projections() -> None:
    # projections of g1=[1,0], g2=[-1,1] onto the dual cone are [0.5,0.5] and [0,1]; UPGrad averages them
    toy = IdentityToy([[1.0, 0.0], [-1.0, 1.0]], point=[2.0, 3.0])
    method = build_gradient_method("upgrad", toy.names, {})
    losses, features = toy.forward()
    method.backward(losses, [toy.p], features, toy.task_params())
    assert torch.allclose(toy.p.grad, torch.tensor([0.25, 0.75]), atol=1e-3)


def test_mgda_runs_and_weights_sum_to_one() -> None:
    toy = IdentityToy([[1.0, 0.0], [-1.0, 1.0]], point=[2.0, 3.0])
    method = build_gradient_method("mgda", toy.names, {})
    losses, features = toy.forward()
    info = method.backward(losses, [toy.p], features, toy.task_params())
    assert float(info.weights.sum()) == pytest.approx(1.0, abs=1e-3)


def test_gradnorm_raises_weight_of_slowly_training_task() -> None:
    # L_k = s_k(t) * (features . e_k)^2 at a fixed point: task 0 decreases quickly, task 1 barely.
    p = nn.Parameter(torch.ones(2))
    method = build_gradient_method(
        "gradnorm", ["fast", "slow"], {"alpha": 1.5, "lr": 0.05, "diagnostics_every": 0}
    )
    weights = []
    for t in range(150):
        p.grad = None
        features = p[None] * 1.0
        scale_fast = max(0.1, 1.0 - t / 50)
        scale_slow = 1.0 - 0.001 * t
        losses = {"fast": scale_fast * features[0, 0] ** 2, "slow": scale_slow * features[0, 1] ** 2}
        info = method.backward(losses, [p], features, {"fast": [], "slow": []})
        weights.append(info.weights.tolist())
    final = method.weights.detach()
    assert weights[0] == [1.0, 1.0]
    assert float(final[1]) > 1.5
    assert float(final[0]) < 0.5
    assert float(final.sum()) == pytest.approx(2.0, abs=1e-5)


def test_gradnorm_state_dict_round_trip() -> None:
    p = nn.Parameter(torch.ones(2))
    method = build_gradient_method("gradnorm", ["a", "b"], {})
    for scale in (1.0, 0.5):
        features = p[None] * 1.0
        method.backward(
            {"a": scale * features[0, 0] ** 2, "b": features[0, 1] ** 2}, [p], features, {"a": [], "b": []}
        )
    clone = build_gradient_method("gradnorm", ["a", "b"], {})
    clone.load_state_dict(method.state_dict())
    assert torch.equal(clone.weights, method.weights)
    assert torch.equal(clone.initial_losses, method.initial_losses)
    assert clone.step == method.step == 2


def _noisy_regression_losses(noise: dict[str, float], steps: int = 120) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    beta = torch.randn(4, generator=gen)
    y = {k: x @ beta + s * torch.randn(64, generator=gen) for k, s in noise.items()}
    torch.manual_seed(0)
    shared = nn.Linear(4, 8)
    heads = nn.ModuleDict({k: nn.Linear(8, 1) for k in noise})
    method = build_gradient_method("uncertainty", list(noise), {"diagnostics_every": 0})
    opt = torch.optim.Adam([*shared.parameters(), *heads.parameters(), *method.parameters()], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        features = shared(x)
        losses = {k: (heads[k](features).squeeze(-1) - y[k]).pow(2).mean() for k in noise}
        info = method.backward(losses, list(shared.parameters()), features)
        opt.step()
    return info.weights_dict()


def test_uncertainty_weighting_gives_noisier_task_lower_weight() -> None:
    weights = _noisy_regression_losses({"clean": 0.1, "noisy": 2.0})
    assert weights["noisy"] < 0.5 * weights["clean"]


def test_uncertainty_weighting_reaches_kendall_optimum() -> None:
    # Minimising c e^{-s} L + s/2 gives e^{-s} = 1 / (2 c L): s = log(2 c L); c = 1 classification, 1/2 regression
    p = nn.Parameter(torch.ones(1))
    method = build_gradient_method(
        "uncertainty", ["cls", "reg"], {"task_kinds": {"cls": "classification", "reg": "regression"}}
    )
    opt = torch.optim.Adam(method.parameters(), lr=0.05)
    for _ in range(800):
        opt.zero_grad()
        features = p[None] * 1.0
        losses = {"cls": 0.5 * features.sum() ** 2, "reg": 4.0 * features.sum() ** 2}
        method.backward(losses, [p], features)
        opt.step()
    assert method.log_vars.detach().tolist() == pytest.approx([math.log(1.0), math.log(4.0)], abs=0.02)


def test_epoch_diagnostics_aggregates_means_and_conflict_share() -> None:
    names = ("a", "b")
    acc = EpochDiagnostics(names)
    acc.update(StepInfo(names, torch.tensor([1.0, 3.0]), torch.tensor([[1.0, -0.5], [-0.5, 1.0]])))
    acc.update(StepInfo(names, torch.tensor([3.0, 1.0]), None))
    acc.update(StepInfo(names, torch.tensor([2.0, 2.0]), torch.tensor([[1.0, 0.25], [0.25, 1.0]])))
    summary = acc.summary()
    assert summary == pytest.approx(
        {"weight_a": 2.0, "weight_b": 2.0, "grad_cos_a__b": -0.125, "conflict_share": 0.5}
    )


def test_task_without_labels_gives_zero_gradient_not_nan() -> None:
    toy = IdentityToy([[1.0, 0.0], [-1.0, 1.0]], point=[2.0, 3.0])
    method = build_gradient_method("pcgrad", toy.names, {})
    losses, features = toy.forward()
    losses["t1"] = losses["t1"] * 0.0
    info = method.backward(losses, [toy.p], features, toy.task_params())
    assert torch.allclose(toy.p.grad, torch.tensor([1.0, 0.0]))
    assert info.cosine_dict()["t0__t1"] == 0.0


def test_unknown_method_and_parameter_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown; expected one of"):
        build_gradient_method("sgdx", ["a"], {})
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['alpha'\]"):
        build_gradient_method("pcgrad", ["a", "b"], {"alpha": 1.0})
    with pytest.raises(ValueError, match="do not match tasks"):
        method = build_gradient_method("equal", ["a", "b"], {})
        p = nn.Parameter(torch.ones(1))
        method.backward({"a": p.sum()}, [p], p[None])


@pytest.mark.parametrize("name", ["upgrad", "mgda"])
def test_torchjd_methods_differentiate_a_bf16_autocast_forward(name: str) -> None:
    # CPU autocast stands in for CUDA's: torch.vmap over a mixed bf16/float32 graph fails, so a trainer that
    # autocasts asks the method to take the tasks one at a time; the features reach it in float32. 32 px, not
    # 16: torch 2.14.1's CPU bf16 convolution backward returns non-finite weight gradients at random for the
    # stride-2 convolution on layer4's 1x1 map at 16 px (~1 model in 5, with plain torch.autograd.grad too)
    from alloy_mtl.mtl.models.multitask import build_model
    from alloy_mtl.mtl.tasks import parse_tasks

    tasks = parse_tasks(
        {
            "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5},
            "thickness": {"kind": "regression", "target": "thickness_mm"},
        }
    )
    torch.manual_seed(0)
    model = build_model("resnet18", 3, 32, tasks)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = model.encode(torch.rand(4, 3, 32, 32))
        outputs = model.forward_heads(features)
    assert features.dtype == torch.float32
    losses = {
        "alloy": nn.functional.cross_entropy(outputs["alloy"].float(), torch.tensor([0, 1, 2, 3])),
        "thickness": outputs["thickness"].float().pow(2).mean(),
    }
    method = build_gradient_method(name, ["alloy", "thickness"])
    method.avoid_vmap()
    assert method.parallel_chunk_size == 1
    shared = list(model.shared_parameters())
    method.backward(
        losses, shared, features, {t: list(model.task_parameters(t)) for t in ("alloy", "thickness")}
    )
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in shared)


def test_avoid_vmap_keeps_a_chosen_chunk_size_and_is_a_no_op_elsewhere() -> None:
    chosen = build_gradient_method("upgrad", ["a", "b"], {"parallel_chunk_size": 2})
    chosen.avoid_vmap()
    assert chosen.parallel_chunk_size == 2
    pcgrad = build_gradient_method("pcgrad", ["a", "b"])
    pcgrad.avoid_vmap()
    assert not hasattr(pcgrad, "parallel_chunk_size")
