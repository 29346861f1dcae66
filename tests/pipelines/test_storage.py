import pytest

from vlaflow.media.fs import resolve
from vlaflow.pipelines.storage import Output
from vlaflow.schemas import InputError


def test_output_on_an_fsspec_filesystem():
    out = Output("memory://vlaflow-test/out")  # not a pyarrow scheme: wrapped through fsspec
    out.write_json("meta/x.json", {"a": 1})
    assert out.read_json("meta/x.json") == {"a": 1}
    assert out.list_files("meta") == ["meta/x.json"]
    assert len(out.sha256("meta/x.json")) == 64 and out.size("meta/x.json") > 0


def test_resolve_local_and_unknown(tmp_path):
    fs, path = resolve(str(tmp_path))
    assert path == str(tmp_path)
    fs, path = resolve(tmp_path.as_uri())
    assert path == str(tmp_path)
    with pytest.raises(InputError, match="cannot open"):
        resolve("nosuchproto://x/y")
