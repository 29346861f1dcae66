"""The version-sensitive Ray calls, in one place (Ray Data/Train APIs drift between minors)."""
from __future__ import annotations

import os


def init_ray(num_cpus: int | None = None, object_store_mb: int | None = None) -> str:
    """Connect to ``RAY_ADDRESS`` if set, else start a local instance; says which it did."""
    import ray

    if ray.is_initialized():
        return "the Ray instance already running in this process"
    kwargs = dict(ignore_reinit_error=True, log_to_driver=False, configure_logging=True,
                  logging_level="ERROR")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        from vlaflow.schemas import InputError

        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError) as err:
            raise InputError(f"cannot connect to the Ray cluster at RAY_ADDRESS={address}: {err}") from None
        return f"the Ray cluster at {address} ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"
    cpus = num_cpus or max(2, os.cpu_count() or 2)
    # address="local": always a fresh instance, never a stale one found through /tmp/ray.
    ray.init(address="local", num_cpus=cpus, object_store_memory=(object_store_mb or 256) << 20,
             include_dashboard=False, **kwargs)
    return f"a local Ray instance ({cpus} CPUs)"


def configure_data_context():
    """Quiet: vlaflow's own progress bar replaces Ray Data's."""
    import logging

    import ray.data

    for name in ("ray.data", "ray.data._internal.execution.streaming_executor", "ray.data.dataset"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    if hasattr(ctx, "enable_operator_progress_bars"):
        ctx.enable_operator_progress_bars = False
    return ctx


def shutdown_ray() -> None:
    """A clean disconnect, so Ray's exit hooks cannot change the command's exit code."""
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()
