"""A GPU host leaves mid-job and another joins: the job runs again there and is delivered once.

The hosts are extra raylets on this machine that declare one GPU each (the tiny engine runs on
the CPU whatever Ray says); the actor needs a GPU, so it can only live on such a node.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from backend.cluster.ray_cluster import RayCluster
from backend.config import ClusterConfig, EngineSettings
from backend.domain import JobStatus, Progress, Started, Succeeded
from backend.service import Service
from tests.backend.helpers import collect, first_matching, request, requester
from tests.cluster.engines import paced_tiny_engine_on_cpu
from tests.cluster.test_ray_workers import (
    ADMIN,
    JOB_TIMEOUT_S,
    READY_TIMEOUT_S,
    ray_config,
    wait_ready,
)

if TYPE_CHECKING:
    from ray.cluster_utils import Cluster

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.slow]


async def test_a_gpu_host_leaving_mid_job_loses_nothing(
    ray_nodes: Cluster, tmp_path: Path, tiny_models_dir: Path
) -> None:
    config = dataclasses.replace(
        ray_config(tmp_path, tiny_models_dir),
        cluster=ClusterConfig(backend="ray", workers=1, gpus_per_worker=1, cpus_per_worker=0),
    )
    first_host = ray_nodes.add_node(num_cpus=1, num_gpus=1)
    second_host = None
    cluster = RayCluster(config.cluster, EngineSettings.of(config), paced_tiny_engine_on_cpu)
    try:
        async with Service.open(config, cluster.source()) as service:
            await wait_ready(service, 1)
            (engine,) = cluster.engines
            assert engine.info is not None and engine.info.node_id == first_host.node_id
            sub = await service.submit(request("across hosts", user="gus", steps=30))
            events = service.subscribe(sub.job.id)
            await first_matching(events, lambda e: isinstance(e, Progress) and e.step >= 2)

            ray_nodes.remove_node(first_host)  # the host goes away with the actor on it
            second_host = ray_nodes.add_node(num_cpus=1, num_gpus=1)  # another one joins
            rest = await collect(events, JOB_TIMEOUT_S + READY_TIMEOUT_S)
            job = await service.job(sub.job.id)
            await wait_ready(service, 1)
            status = await service.status(requester(ADMIN))
    finally:
        cluster.close()
        if second_host is not None:
            ray_nodes.remove_node(second_host)
    assert isinstance(rest[-1], Succeeded), rest
    assert sum(isinstance(e, Succeeded) for e in rest) == 1
    assert any(isinstance(e, Started) for e in rest), "it ran again on the new host"
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
    assert engine.info is not None and engine.info.node_id == second_host.node_id
    (shown,) = status.engines
    assert shown.restarts == 1 and shown.ready
