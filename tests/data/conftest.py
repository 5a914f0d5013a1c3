"""Fixtures: tiny generated copies of each real dataset layout (see dataset_mimics)."""

from pathlib import Path

import pytest
from dataset_mimics import Mimic, make_cars, make_csv, make_cub, make_sop


@pytest.fixture
def cub_mimic(tmp_path: Path) -> Mimic:
    return make_cub(tmp_path)


@pytest.fixture
def cars_mimic(tmp_path: Path) -> Mimic:
    return make_cars(tmp_path)


@pytest.fixture
def sop_mimic(tmp_path: Path) -> Mimic:
    return make_sop(tmp_path)


@pytest.fixture
def csv_mimic(tmp_path: Path) -> Mimic:
    return make_csv(tmp_path)
