"""Ray Data read side: one read task per group of source episodes = one output shard.

A task converts, validates and quarantines its episodes, streams the good ones into the group's
shard (``ShardWriter``) and yields one small row describing the result. One batch of episodes is in
flight at a time, so memory stays flat however large the shard. The group's marker (written last)
records everything the ledger needs, so an interrupted run resumes group by group.
"""
from __future__ import annotations

import time

import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from vlaflow.converters import Converter, ConverterOptions, Rejected
from vlaflow.converters import load as load_converter
from vlaflow.schemas import Episode, EpisodeError, episode_row, episodes_to_table, step_schema, validate_episode

from .layout import BATCH_BYTES, BATCH_EPISODES, group_marker
from .plan import Group
from .shard_writer import ShardWriter
from .storage import Output

RESULT_SCHEMA = pa.schema([("group", pa.int64()), ("episodes_in", pa.int64()), ("episodes_out", pa.int64()),
                           ("steps_in", pa.int64()), ("steps_out", pa.int64())])

_CONVERTERS: dict[tuple, Converter] = {}


def converter_for(name: str, input_path: str, options: ConverterOptions) -> Converter:
    """One converter per worker process (opening a builder dir parses its features once)."""
    key = (name, input_path, repr(options))
    if key not in _CONVERTERS:
        _CONVERTERS[key] = load_converter(name)(input_path, options)
    return _CONVERTERS[key]


class _Progress:
    """Best-effort counts to the driver's progress bar through a named actor."""

    def __init__(self, actor_name: str | None):
        self.actor = None
        self.pending = [0, 0]
        self.last = time.monotonic()
        if actor_name:
            import ray

            try:
                self.actor = ray.get_actor(actor_name)
            except ValueError:
                self.actor = None

    def add(self, episodes: int, steps: int, force: bool = False) -> None:
        self.pending[0] += episodes
        self.pending[1] += steps
        if self.actor is not None and (force or time.monotonic() - self.last > 0.5):
            self.actor.add.remote(*self.pending)
            self.pending = [0, 0]
            self.last = time.monotonic()


def _nbytes(ep: Episode) -> int:
    frames = sum(len(b) for f in ep.images.values() if f for b in f if b)
    frames += sum(len(c.data) for c in ep.videos.values() if c.data)
    return frames + ep.action.nbytes + ep.state.nbytes + ep.action_raw.nbytes


def convert_group(group: Group, converter: str, input_path: str, options: ConverterOptions,
                  output_uri: str, datasets_meta: dict, verify_images: bool = False,
                  progress_actor: str | None = None) -> dict:
    """Convert one group end to end; returns (and records in its marker) what went in and out."""
    conv = converter_for(converter, input_path, options)
    out = Output(output_uri)
    schema = step_schema(datasets_meta)
    writer: ShardWriter | None = None
    rows, rejected, batch = [], [], []
    steps_in = batch_bytes = 0
    progress = _Progress(progress_actor)

    def flush():
        nonlocal writer, batch_bytes
        if writer is None:
            writer = ShardWriter(out, group.shard, schema)
        for ep in batch:
            for role, clip in ep.videos.items():
                if clip.data is not None:
                    ep.videos[role] = writer.videos.append(role, clip)
        writer.add(episodes_to_table(batch, schema), len(batch))
        batch.clear()
        batch_bytes = 0

    def consume():
        nonlocal steps_in, batch_bytes
        for unit in group.units:
            for item in conv.read(unit):
                if isinstance(item, Rejected):
                    rejected.append(item.__dict__)
                    steps_in += item.steps
                    progress.add(1, item.steps)
                    continue
                steps_in += item.length
                progress.add(1, item.length)
                try:
                    validate_episode(item, verify_images=verify_images)
                except EpisodeError as err:
                    rejected.append(Rejected.from_error(item.episode_id, err, f"{item.source_file}#"
                                                        f"{item.source_index}", item.length).__dict__)
                    continue
                rows.append(episode_row(item, group.shard))
                batch.append(item)
                batch_bytes += _nbytes(item)
                if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_EPISODES:
                    flush()
        if batch:
            flush()

    try:
        consume()
        shard = writer.close() if writer is not None else None
    except BaseException:
        if writer is not None:  # no half-written shard, temporary MP4s or open containers left behind
            writer.abort()
        raise
    progress.add(0, 0, force=True)
    if shard is not None:
        for row, rg in zip(rows, shard.pop("episode_row_group"), strict=True):
            row["row_group"] = rg
    marker = {
        "group": group.id, "dataset": group.dataset, "split": group.split, "shard": shard,
        "episodes_in": len(rows) + len(rejected), "episodes_out": len(rows), "steps_in": steps_in,
        "steps_out": sum(r["length"] for r in rows), "episodes": rows, "rejected": rejected,
        "sources": sorted({u.source for u in group.units}),
        "warnings": conv.warnings(),  # raised while reading, on this worker
    }
    out.write_json(group_marker(group.id), marker)  # last: its presence means the group is done
    return marker


class EpisodeDatasource(Datasource):
    def __init__(self, groups: list[Group], converter: str, input_path: str, options: ConverterOptions,
                 output_uri: str, datasets_meta: dict, verify_images: bool = False,
                 progress_actor: str | None = None):
        self.groups = groups
        self.args = (converter, input_path, options, output_uri, datasets_meta, verify_images, progress_actor)

    def estimate_inmemory_data_size(self) -> int:
        return 64 * len(self.groups)  # each task yields one small result row

    def _read(self, group: Group):
        m = convert_group(group, *self.args)
        yield pa.Table.from_pylist([{k: m[k] for k in RESULT_SCHEMA.names}], schema=RESULT_SCHEMA)

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
        tasks = []
        for g in self.groups:
            meta = BlockMetadata(num_rows=1, size_bytes=64, exec_stats=None,
                                 input_files=tuple(sorted({u.source for u in g.units})))
            tasks.append(ReadTask(lambda g=g: self._read(g), meta, schema=RESULT_SCHEMA))
        return tasks

    def get_name(self) -> str:
        return f"VlaflowEpisodes({self.args[0]})"
