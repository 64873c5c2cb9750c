"""Checkpoint files: atomic writes, refusals of what is not a complete checkpoint of ours, RNG round trip."""

import random

import numpy as np
import pytest
import torch

from mnist_exp.run.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from mnist_exp.errors import UserError


def payload(value: float) -> dict:
    weights = {"w": torch.full((3,), value)}
    config = {"model": {"name": "cnn"}, "dataset": {"name": "fake", "flatten": False},
              "trainer": {"epochs": 2, "batch_size": 64, "eval_batch_size": 500},
              "device": {"precision": "fp32", "channels_last": True}}
    return {"format": 2, "kind": "last", "config": config, "class_names": ["0", "1"],
            "weights": weights, "epoch": 1,
            "trainer": {"model": weights, "optimizer": {}, "scheduler": {}, "state": {}, "rng": rng_states()}}


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload(1.0))
    broken = payload(2.0)
    broken["config"] = {"callback": lambda: None}  # torch.save fails while writing: a lambda cannot be pickled
    with pytest.raises(AttributeError, match="Can't (pickle|get local object)"):
        save_checkpoint(path, broken)
    assert torch.equal(load_checkpoint(path)["weights"]["w"], torch.full((3,), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_truncated_and_foreign_files_are_refused_with_a_reason(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(path, payload(1.0))
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(UserError, match="is unreadable: it is truncated or corrupt \\(not a complete torch archive\\)"):
            load_checkpoint(path)
    # Whole, but with bytes of a tensor changed (a failing disk): torch would load the changed weights.
    save_checkpoint(path, {**payload(1.0), "weights": {"w": torch.full((4096,), 1.0)}})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="is unreadable: it is truncated or corrupt"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(UserError, match="is not a checkpoint mnist_exp wrote \\(missing: format, kind, config"):
        load_checkpoint(path)
    for wrong, what in (({"config": "hello"}, "config"), ({"epoch": "one"}, "epoch"), ({"epoch": True}, "epoch"),
                        ({"config": {"model": [1], "dataset": {"flatten": 0}, "device": {}}},
                         "config.model, config.dataset.name, config.dataset.flatten, config.device.precision, "
                         "config.device.channels_last, config.trainer"),
                        ({"config": {**payload(1.0)["config"], "device": {"precision": "fp32"}}},
                         "config.device.channels_last"),
                        ({"config": {**payload(1.0)["config"],  # a count the tools divide by: not a traceback
                                     "trainer": {"epochs": 2, "batch_size": True, "eval_batch_size": 0}}},
                         "config.trainer.batch_size, config.trainer.eval_batch_size"),
                        ({"normalisation": "xx"}, "normalisation"), ({"normalisation": [0.1, 0]}, "normalisation"),
                        ({"image_shape": [1, 28]}, "image_shape"),  # the tools bring new images to these
                        ({"image_shape": [1, 14, 14], "config": {**payload(1.0)["config"],
                                                                 "model": {"name": "cnn", "image_size": 28}}},
                         "image_shape")):
        torch.save({**payload(1.0), **wrong}, path)
        with pytest.raises(UserError, match=rf"is not a checkpoint mnist_exp wrote \({what}: not what a run writes "):
            load_checkpoint(path)
    torch.save({**payload(1.0), "format": 1}, path)
    with pytest.raises(UserError, match="is a checkpoint of format 1; this version of mnist_exp reads format 2"):
        load_checkpoint(path)


def test_rng_states_round_trip_through_a_file(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    save_checkpoint(tmp_path / "c.pt", payload(0.0))
    expected = (random.random(), np.random.rand(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_states(load_checkpoint(tmp_path / "c.pt")["trainer"]["rng"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(2), expected[2])
