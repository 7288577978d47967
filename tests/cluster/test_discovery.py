"""Workers follow the cluster's GPUs: a GPU node joining gives new actors (``workers = 0``).

The joining node is a second raylet on this machine that declares two GPUs; the actors placed
there are never asked to load (there is no CUDA here) — this is about counting and placement.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from backend.cluster.ray_cluster import RayCluster
from backend.config import ClusterConfig, EngineSettings
from tests.backend.helpers import make_config
from tests.cluster.engines import tiny_engine

if TYPE_CHECKING:
    from ray.cluster_utils import Cluster

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.slow]


def test_a_gpu_node_joining_gives_one_worker_per_gpu(ray_nodes: Cluster, tmp_path: Path) -> None:
    import ray

    config = make_config(tmp_path / "data")
    cluster = RayCluster(
        ClusterConfig(backend="ray", workers=0, gpus_per_worker=1.0, cpus_per_worker=0.0),
        EngineSettings.of(config),
        tiny_engine,
    )
    assert cluster.start() == []  # the head has no GPU: nothing to run yet
    node = ray_nodes.add_node(num_cpus=1, num_gpus=2)
    try:
        ray_nodes.wait_for_nodes()
        new = cluster.discover()
        assert [e.device for e in new] == ["ray-1", "ray-2"]
        assert cluster.discover() == []  # both GPUs taken
        infos = [ray.get(e._actor.describe.remote(), timeout=60) for e in cluster.engines]
        assert sorted(i.gpu_ids for i in infos) == [("0",), ("1",)]
        assert {i.node_id for i in infos} == {node.node_id}
        assert all(i.device == "cuda:0" for i in infos)  # each sees its one GPU as cuda:0
    finally:
        cluster.close()
        ray_nodes.remove_node(node)
