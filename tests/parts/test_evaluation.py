"""``cdml evaluate`` over parts: exact a part at a time equals evaluate() on the whole
array; approximate with an index built from the parts says so and comes close."""

import json

import numpy as np
import pytest

from cdml.cli import main
from cdml.metrics import evaluate
from cdml.parts import PartsFolder, index_parts
from cdml.parts.evaluation import evaluate_parts

from .conftest import synthetic_parts


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_exact_over_parts_equals_evaluate_on_the_whole_array(metric, tmp_path):
    vectors = synthetic_parts(tmp_path / "parts", 5000, part_size=1500, classes=60)
    labels = np.concatenate([items.column("label").to_numpy()
                             for _, items in PartsFolder(tmp_path / "parts").parts()])  # fmt: skip
    whole = evaluate(vectors, labels, ks=(1, 4), nmi=False, metric=metric)
    parts = evaluate_parts(tmp_path / "parts", (1, 4), nmi=False, metric=metric, progress=False)
    assert parts == pytest.approx(whole, abs=1e-12)


def test_the_index_ranks_approximately_and_nmi_is_sampled(tmp_path, capsys):
    synthetic_parts(tmp_path / "parts", 6000, part_size=2000, classes=60)
    index_parts(tmp_path / "parts", tmp_path / "index", kind="IVF32,Flat", progress=False)
    exact = evaluate_parts(tmp_path / "parts", (1,), nmi_sample=3000, progress=False)
    argv = ["evaluate", str(tmp_path / "parts"), "--index", str(tmp_path / "index"),
            "--ks", "1", "--json", str(tmp_path / "m.json")]  # fmt: skip
    assert main(argv) == 0
    assert "approximate, ranked by the index" in " ".join(capsys.readouterr().out.split())
    approximate = json.loads((tmp_path / "m.json").read_text())
    assert abs(approximate["recall@1"] - exact["recall@1"]) < 0.05
    assert exact["nmi_sample"] == 3000 and approximate["nmi_sample"] == 6000
    assert main(["evaluate", str(tmp_path / "parts"), "--rerank", "aqe"]) == 2
    assert "--rerank: not with a folder of parts" in capsys.readouterr().err
