"""What every stage entry point shares: ``--config <yaml>`` (``yaml.safe_load``), the stage's section, key checks
that name a typo in one line, and exit codes (2 for a usage/input error, never a traceback)."""
from __future__ import annotations

import argparse
import difflib
import sys

from vlaflow.schemas import SpecError, VlaflowError


def parse_args(stage: str, argv=None) -> tuple[dict, list[str]]:
    """``--config FILE`` plus ``KEY=VALUE`` overrides; returns (the stage's section, overrides)."""
    from vlaflow.pipelines.train import apply_overrides, load_config_file

    p = argparse.ArgumentParser(prog=f"jobs/{stage}.py", description=f"vlaflow {stage} stage as a Ray job")
    p.add_argument("--config", required=True, help=f"YAML with a `{stage}:` section (or only that section)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the section (e.g. steps=20)")
    args = p.parse_args(argv)
    return apply_overrides(load_config_file(args.config, stage), args.overrides), args.overrides


def check_keys(section: dict, known: list[str], stage: str) -> None:
    for k in section:
        if k not in known:
            near = difflib.get_close_matches(k, known, n=1)
            raise SpecError(f"{stage}.{k}: unknown key" + (f" (did you mean {near[0]!r}?)" if near else "")
                            + f"; known: {', '.join(known)}")


def need(section: dict, key: str, stage: str):
    if not section.get(key):
        raise SpecError(f"{stage}.{key}: required")
    return section[key]


def main(stage: str, run) -> None:
    """Run ``run(section)``; a foreseeable error is one line on stderr and exit 2."""
    try:
        section, _ = parse_args(stage)
        code = run(section) or 0
    except (VlaflowError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    finally:
        from vlaflow.pipelines.ray_compat import shutdown_ray

        shutdown_ray()
    sys.exit(code)
