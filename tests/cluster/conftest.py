"""One local Ray for the whole session (it takes seconds to start): every Ray test shares it.

The tests that use it are in the ``ray`` xdist group, so they run in one worker process — the one
that started the cluster. Actor processes get this repository on PYTHONPATH, so that they can
import the test engines (``tests.cluster.engines``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ray.cluster_utils import Cluster

ROOT = Path(__file__).resolve().parents[2]
CPUS = 4  # logical: two actors of one CPU each, and room for a second driver's actors


@pytest.fixture(scope="session")
def ray_nodes() -> Iterator[Cluster]:
    """A local Ray cluster of one head node (CPUs only), joined by this process; more nodes can
    be added and removed (``Cluster.add_node``) to play GPU hosts joining and leaving."""
    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": CPUS, "num_gpus": 0, "object_store_memory": 128 * 1024**2,
            "include_dashboard": False,
        },
    )  # fmt: skip
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        address=nodes.address,
        namespace="majicbot-tests",
        runtime_env={"env_vars": {"PYTHONPATH": path}},
        logging_level="WARNING",
    )
    try:
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


@pytest.fixture(scope="session")
def ray_cluster(ray_nodes: Cluster) -> str:
    """The session cluster's address (for a second process to join)."""
    return str(ray_nodes.address)
