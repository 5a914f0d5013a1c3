"""The one registry shape: names, duplicates, listing, creation, the error naming the choices."""

import pytest

from cdml.clustering import CLUSTER_METHODS
from cdml.data import DATASETS
from cdml.losses import METHODS
from cdml.registry import Registry, UnknownName
from cdml.training.loggers import LOGGERS
from cdml.training.optimizers import OPTIMIZERS


def test_a_registry_lists_creates_and_names_its_choices():
    shapes = Registry("shape", setting="draw.shape", hint="or a file of your own")

    @shapes.register("square")
    def square(side):
        return side * side

    shapes.register("circle", lambda radius: 3 * radius * radius)
    assert list(shapes) == ["square", "circle"] and len(shapes) == 2 and "square" in shapes
    assert shapes["square"] is square and shapes.create("square", 3) == 9
    assert shapes.register("square", square) is square  # the same entry again: no change
    with pytest.raises(ValueError, match="shape 'square' is already registered"):
        shapes.register("square", lambda side: side)
    message = "draw.shape: unknown shape 'hexagon'; known: square, circle, or a file of your own"
    with pytest.raises(UnknownName, match=message) as error:
        shapes["hexagon"]
    assert str(error.value) == message and isinstance(error.value, KeyError | ValueError)
    assert shapes.get("hexagon") is None  # a Mapping's get
    assert shapes.unregister("circle") and list(shapes) == ["square"]


@pytest.mark.parametrize(
    ("registry", "message"),
    [
        (METHODS, "unknown loss 'nope'; known: cbswr, facility"),
        (DATASETS, "unknown dataset name 'nope'; known: "),
        (CLUSTER_METHODS, "method: unknown clustering method 'nope'; known: spectral"),
        (OPTIMIZERS, "optim.name: unknown optimiser 'nope'; known: rmsprop, adam, radam, sgd"),
        (LOGGERS, "trainer.loggers: unknown logger 'nope'; known: csv, tensorboard"),
    ],
)
def test_every_registry_of_cdml_has_the_one_shape(registry, message):
    assert isinstance(registry, Registry) and len(registry) > 0
    with pytest.raises(ValueError, match=message):
        registry["nope"]
