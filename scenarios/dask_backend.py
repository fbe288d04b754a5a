"""Chaos campaigns on a Dask distributed cluster (``hvsim chaos --scheduler tcp://host:port``).

Each seed is one task running :func:`hvsim.scenarios.chaos.run_seed` on a worker; the worker sends
back the result row and, for a failure, the artifact's files, which are written here, on the
machine running the command, exactly where a local campaign writes them. Results go into the same
SQLite store, so a campaign resumes across backends and ends with the same rows as a local run.
Workers need hvsim (and the host module under test) importable; ``pip install 'hvsim[dask]'``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from hvsim.scenarios.chaos import Campaign, SeedResult, run_seed


class DaskUnavailable(Exception):
    """The dask extra is missing or the scheduler cannot be reached (one line for the user)."""


def run_seed_remote(campaign: Campaign, seed: int, artifacts: str) -> tuple[SeedResult, dict[str, str]]:
    """On a worker: run one seed; return its row and its artifact files (relative path -> text),
    whose repro commands name *artifacts*, the folder they will be copied to."""
    with tempfile.TemporaryDirectory(prefix="hvsim-seed-") as tmp:
        result = run_seed(campaign, seed, tmp, artifacts)
        files = {
            path.relative_to(tmp).as_posix(): path.read_text()
            for path in sorted(Path(tmp).rglob("*"))
            if path.is_file()
        }
    return result, files


def run_on_dask(campaign: Campaign, seeds: list[int], address: str, artifacts: Path) -> Iterator[SeedResult]:
    """Yield each seed's result as the cluster finishes it, after writing its artifact files."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise DaskUnavailable("--scheduler needs the dask extra: pip install 'hvsim[dask]'") from None
    try:
        client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise DaskUnavailable(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        futures = [
            client.submit(run_seed_remote, campaign, seed, str(artifacts), pure=False) for seed in seeds
        ]
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            result, files = future.result()
            for name, text in files.items():
                path = artifacts / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            yield result
    finally:
        client.close()  # type: ignore[no-untyped-call]
