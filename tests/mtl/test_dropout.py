"""Each model's dropout draws from its own generator, so models trained at once in threads stay reproducible."""

from __future__ import annotations

import copy
import logging
import pickle
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from alloy_mtl.mtl.models.dropout import SeededDropout, attach_generator, use_seeded_dropout
from alloy_mtl.mtl.models.multitask import build_model
from alloy_mtl.mtl.recipe import train_from_params
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.mtl.training.callbacks import Callback
from tests.mtl.test_experiment import TASKS, _data, _params


def test_seeded_dropout_masks_come_from_its_generator_not_the_global_one():
    layer = SeededDropout(0.3)
    layer.generator = torch.Generator().manual_seed(5)
    x = torch.ones(4000)
    torch.manual_seed(0)
    first = layer(x)
    torch.manual_seed(1)  # another global state: the same mask, since the generator alone decides it
    layer.generator.manual_seed(5)
    second = layer(x)
    assert torch.equal(first, second)
    dropped = (first == 0).float().mean().item()
    assert dropped == pytest.approx(0.3, abs=0.03)
    assert torch.allclose(first[first != 0], torch.full_like(first[first != 0], 1 / 0.7))
    layer.eval()
    assert torch.equal(layer(x), x)


def test_without_a_generator_it_is_torchs_dropout():
    layer, reference = SeededDropout(0.4), nn.Dropout(0.4)
    x = torch.ones(100)
    torch.manual_seed(3)
    ours = layer(x)
    torch.manual_seed(3)
    assert torch.equal(ours, reference(x))


def test_copies_and_pickles_carry_no_generator_and_the_state_dict_is_unchanged():
    tasks = parse_tasks(TASKS)
    plain = build_model(
        "fnn",
        in_chans=1,
        image_size=16,
        tasks=tasks,
        activation="relu",
        pretrained=False,
        fnn_pool_size=8,
        fnn_hidden=[16],
    )
    dropouts = [m for m in plain.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(type(m) is SeededDropout for m in dropouts)  # the heads' dropout
    generator = torch.Generator().manual_seed(1)
    assert attach_generator(plain, generator) == len(dropouts)
    for clone in (copy.deepcopy(plain), pickle.loads(pickle.dumps(plain))):
        assert all(m.generator is None for m in clone.modules() if isinstance(m, SeededDropout))
    assert all(m.generator is generator for m in dropouts)
    wrapped = use_seeded_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.2)))
    assert type(wrapped[1]) is SeededDropout and wrapped[1].p == 0.2
    assert list(wrapped.state_dict()) == ["0.weight", "0.bias"]


def test_training_draws_nothing_from_the_process_wide_generator():
    images, metadata = _data()
    observed: list[torch.Tensor] = []

    class Watch(Callback):  # the state right after fit seeded the global generator, and after the last epoch
        def on_train_begin(self, trainer):
            observed.append(torch.get_rng_state())

        def on_train_end(self, trainer, history):
            observed.append(torch.get_rng_state())

    train_from_params(images, metadata, _params(epochs=3), None, callbacks=[Watch()])
    assert torch.equal(observed[0], observed[1])


def test_two_models_trained_at_once_in_threads_equal_each_trained_alone():
    images, metadata = _data()
    settings = {
        "a": _params(seed=3, epochs=3),
        "b": _params(seed=4, epochs=3, lr=0.05, model_options={"fnn_pool_size": 8, "fnn_hidden": [32]}),
    }
    alone = {
        key: train_from_params(images, metadata, params, None).predictions for key, params in settings.items()
    }
    together: dict[str, pd.DataFrame] = {}
    start = threading.Barrier(len(settings))

    def train(key: str) -> None:
        start.wait()
        together[key] = train_from_params(images, metadata, settings[key], None).predictions

    threads = [threading.Thread(target=train, args=(key,)) for key in settings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for key in settings:
        pd.testing.assert_frame_equal(alone[key], together[key])
    assert not np.allclose(alone["a"].filter(like="prob_"), alone["b"].filter(like="prob_"))


def test_epoch_lines_name_the_model_that_wrote_them(caplog):
    images, metadata = _data()
    with caplog.at_level(logging.INFO, logger="alloy_mtl.mtl.training.callbacks"):
        train_from_params(images, metadata, _params(epochs=1), None)
    assert "fnn epoch 1: train_loss=" in caplog.text
