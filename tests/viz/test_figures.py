import pytest
from PIL import Image

from cdml.viz.figures import is_cdml_png, new_figure, save_png


def _figure():
    figure = new_figure(2, 1, dpi=50)
    figure.add_subplot().plot([0, 1], [1, 0])
    return figure


def test_writes_a_png_and_creates_folders(tmp_path, read_png):
    out = tmp_path / "a" / "b" / "plot.png"
    assert save_png(_figure(), out) == out
    assert read_png(out).ndim == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["plot.png"]


def test_replaces_a_picture_it_drew_and_refuses_any_other_file(tmp_path):
    out = tmp_path / "plot.png"
    save_png(_figure(), str(out))
    assert is_cdml_png(out)
    save_png(_figure(), str(out))
    assert is_cdml_png(out)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (4, 4)).save(photo)
    for other in (photo, tmp_path / "notes.png"):
        if not other.exists():
            other.write_bytes(b"old")
        before = other.read_bytes()
        with pytest.raises(ValueError, match="is not a PNG picture written by cdml"):
            save_png(_figure(), other)
        assert other.read_bytes() == before


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    out = tmp_path / "plot.png"
    save_png(_figure(), out)
    old = out.read_bytes()
    figure = _figure()

    def broken_savefig(stream, **kwargs):
        stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        save_png(figure, out)
    assert out.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
