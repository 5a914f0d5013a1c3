import pytest

from cdml.viz.figures import new_figure, save_png


def _figure():
    figure = new_figure(2, 1, dpi=50)
    figure.add_subplot().plot([0, 1], [1, 0])
    return figure


def test_writes_a_png_and_creates_folders(tmp_path, read_png):
    out = tmp_path / "a" / "b" / "plot.png"
    assert save_png(_figure(), out) == out
    assert read_png(out).ndim == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["plot.png"]


def test_replaces_an_existing_file(tmp_path):
    out = tmp_path / "plot.png"
    out.write_bytes(b"old")
    save_png(_figure(), str(out))
    assert out.read_bytes().startswith(b"\x89PNG")


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    out = tmp_path / "plot.png"
    out.write_bytes(b"old")
    figure = _figure()

    def broken_savefig(stream, **kwargs):
        stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        save_png(figure, out)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
