"""Bad input through the command line: one line naming the culprit, exit code 2, no traceback,
nothing written."""

import numpy as np
import pytest
from PIL import Image

from cdml import cli
from cdml.cli import main
from cdml.data.image_dataset import ImageListDataset

BOMB = 'a: &a ["x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\n'


def run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_a_csv_dataset_without_its_file_is_named(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run(["train", "--dataset", "csv", "--loss", "triplet", "--out", str(out)], capsys)
    assert code == 2 and "needs its CSV file as root (--data-root" in err
    assert not (out / "config.yaml").exists()


def test_nested_yaml_aliases_are_refused_at_once(tmp_path, capsys):
    config = tmp_path / "bomb.yaml"
    config.write_text(BOMB)
    code, err = run(["train", "--config", str(config), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "aliases (*name) are not accepted" in err and str(config) in err
    deep = "loss.params=" + "[" * 40 + "]" * 40
    argv = ["train", "--dataset", "digits", "--loss", "triplet", "--set", deep]
    code, err = run([*argv, "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "nested deeper than 32 levels" in err


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"embeddings": np.float32(3.0), "labels": np.zeros(3, int)}, "'embeddings' must be a 2-D"),
        (
            {"embeddings": np.zeros((3, 2)), "labels": np.zeros((3, 1), int)},
            "'labels' must be a 1-D",
        ),
    ],
)
def test_embeddings_files_of_the_wrong_shape_are_named(arrays, message, tmp_path, capsys):
    path = tmp_path / "e.npz"
    np.savez(path, **arrays)
    for command in (
        ["evaluate", str(path)],
        ["plot", "--embeddings", str(path), "--out", str(tmp_path / "p.png")],
    ):
        code, err = run(command, capsys)
        assert code == 2 and message in err
    assert not (tmp_path / "p.png").exists()


def test_a_decompression_bomb_is_refused_by_name_and_skipped_on_request(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 10_000)).save(bomb)  # 200 million pixels in a few kilobytes
    assert bomb.stat().st_size < 1_000_000
    strict = ImageListDataset([str(bomb), str(good)], [0, 0], ["a"])
    with pytest.raises(OSError, match=f"cannot read image {bomb}"):
        strict[0]
    lenient = ImageListDataset([str(bomb), str(good)], [0, 0], ["a"], skip_bad=True)
    with pytest.warns(RuntimeWarning, match="skipped unreadable image"):
        image, _ = lenient[0]
    assert image.size == (8, 8) and str(bomb) in lenient.skipped


def test_an_unexpected_error_is_one_line_naming_its_type(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something inside broke\nsecond line")

    monkeypatch.setattr(cli, "_run_evaluate", broken)
    code, err = run(["evaluate", "x.npz"], capsys)
    assert code == 1
    assert err.strip() == (
        "cdml evaluate: error (RuntimeError): something inside broke (set CDML_DEBUG=1 to see "
        "the traceback)"
    )


def test_a_run_stopped_by_sigterm_does_not_exit_as_a_success(monkeypatch, capsys):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    def stopped(args):
        raise SIGTERMException

    monkeypatch.setattr(cli, "_run_train", stopped)
    code, err = run(["train", "--dataset", "digits", "--loss", "triplet"], capsys)
    assert code == 143 and "stopped by SIGTERM" in err and "--resume" in err


@pytest.mark.parametrize("mode", ["P", "CMYK", "RGBA", "LA", "1", "I;16"])
def test_unusual_image_modes_are_read_as_rgb(mode, tmp_path):
    from cdml.data.image_dataset import open_rgb

    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    if mode == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 257)  # the same picture in 16 bits
    else:
        image = Image.fromarray(np.stack([grey] * 3, 2)).convert(mode)
    path = tmp_path / ("image.tif" if mode == "CMYK" else "image.png")
    image.save(path)
    pixels = np.asarray(open_rgb(str(path)))
    assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8
    if mode in ("RGBA", "LA", "I;16"):  # lossless for the grey picture
        np.testing.assert_array_equal(pixels[..., 0], grey)
