import numpy as np
import pyarrow.parquet as pq

from vlaflow.pipelines.shard_writer import RowGroups, open_writer
from vlaflow.schemas import Col, episode_to_table, step_schema


def test_row_groups_hold_whole_episodes_and_close_by_bytes(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("te", Path(__file__).parents[1] / "schemas/test_episode.py")
    te = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(te)
    schema = step_schema()
    eps = []
    for i, t in enumerate((3, 5, 2, 4)):
        ep = te.make_episode(t)
        ep.episode_id = f"d/{i}"
        eps.append(episode_to_table(ep, schema))
    path = tmp_path / "s.parquet"
    w = open_writer(str(path), schema)
    rg = RowGroups(w, limit=eps[0].nbytes + eps[1].nbytes)  # closes after the first two episodes
    for e in eps:
        rg.add(e, 1)
    rg.flush()
    w.close()
    assert rg.episode_row_group == [0, 0, 1, 1] and rg.index == 2
    pf = pq.ParquetFile(path)
    assert [pf.metadata.row_group(i).num_rows for i in range(2)] == [8, 6]
    assert pf.read_row_group(1)[Col.EPISODE_ID].to_pylist() == ["d/2"] * 2 + ["d/3"] * 4
    md = pf.metadata.row_group(0)
    cols = {md.column(i).path_in_schema: md.column(i) for i in range(md.num_columns)}
    assert not cols["images.primary.bytes"].is_stats_set  # no frames copied into the footer
    assert cols["step_index"].is_stats_set and cols["action.list.element"].compression == "ZSTD"
    # float vectors (nested ones too) are byte-stream-split + zstd, without dictionaries or min/max
    for leaf in ("action.list.element", "action_raw.list.element", "trajectory.list.element.list.element"):
        assert "BYTE_STREAM_SPLIT" in cols[leaf].encodings and cols[leaf].compression == "ZSTD", leaf
        assert not cols[leaf].is_stats_set
    assert cols["videos.primary.frame_index"].compression == "ZSTD"
    assert cols["images.primary.bytes"].compression == "UNCOMPRESSED"
    assert np.array_equal(pf.read()[Col.STEP_INDEX].to_numpy(), np.r_[0:3, 0:5, 0:2, 0:4])
