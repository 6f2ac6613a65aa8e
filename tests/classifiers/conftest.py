from __future__ import annotations

from pathlib import Path

import pytest

from classifiers import Example, Model, load_seed, train
from classifiers.data_io import read_examples, seed_files

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def mini_examples() -> list[Example]:
    """96 hand-written rows, 12 per label and language: fast tests of the mechanics."""
    return read_examples(FIXTURES / "mini_seed.csv")


@pytest.fixture(scope="session")
def mini_model(mini_examples: list[Example]) -> Model:
    return train(mini_examples, seed=0)


@pytest.fixture(scope="session")
def seed_examples() -> list[Example]:
    assert seed_files(), "classifiers/data/seed_*.csv is missing"
    return load_seed()


@pytest.fixture(scope="session")
def seed_model(seed_examples: list[Example]) -> Model:
    return train(seed_examples, seed=0)
