"""atomic.replaced / write_text: a file is replaced whole or left as it was."""

import pytest

from sparseinfer_dse.atomic import replaced, write_text


def test_write_text_replaces_whole(tmp_path):
    path = tmp_path / "a.json"
    write_text(path, "old")
    write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_interrupted_write_keeps_the_old_file_and_no_temporary(tmp_path, exc):
    path = tmp_path / "trials.csv"
    path.write_text("old,complete\n")
    with pytest.raises(exc):
        with replaced(path) as tmp:
            tmp.write_text("new,half")
            raise exc
    assert path.read_text() == "old,complete\n" and [p.name for p in tmp_path.iterdir()] == ["trials.csv"]


def test_temporary_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    with replaced(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        fig.savefig(tmp)
    plt.close(fig)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
