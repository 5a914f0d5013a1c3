"""Data loading settings resolved from the machine."""

import os

import pytest

from cdml.data import loading
from cdml.data.loading import MAX_WORKERS, default_workers, loader_settings


@pytest.mark.parametrize(
    ("cores", "processes", "workers"),
    [(1, 1, 0), (2, 1, 1), (16, 1, MAX_WORKERS), (16, 2, 7), (8, 4, 1), (2, 4, 0)],
)
def test_workers_follow_the_cores_this_process_may_use(monkeypatch, cores, processes, workers):
    monkeypatch.setattr(loading, "usable_cores", lambda: cores)
    assert default_workers(processes) == workers


def test_usable_cores_are_the_affinity():
    assert loading.usable_cores() == len(os.sched_getaffinity(0))


def test_settings_keep_workers_and_pin_for_cuda(monkeypatch):
    monkeypatch.setattr(loading, "usable_cores", lambda: 4)
    assert loader_settings(None) == {
        "num_workers": 3, "persistent_workers": True, "pin_memory": False,
    }  # fmt: skip
    assert loader_settings(0, pinned=True) == {
        "num_workers": 0, "persistent_workers": False, "pin_memory": True,
    }  # fmt: skip
    assert loader_settings(2, processes=4)["num_workers"] == 2  # given: kept
