"""Connect to Ray and keep one ``GpuWorker`` actor per GPU the cluster offers.

``cluster.address``: "" starts a private Ray inside this process (one host, nothing to set up);
"auto" joins the Ray started on this host with ``ray start --head``; "host:6379" or
"ray://host:10001" joins another head. With ``cluster.workers = 0`` the actors follow the
cluster's GPUs: one per ``gpus_per_worker`` GPUs at start, and more when ``discover`` (every
``discover_every_s``) finds that nodes joined. Ray places each actor on a node with a free GPU,
restarts it when its process dies (``max_restarts``), and on another node when its node left.

The private Ray is started from a thread that lives until ``close``: Ray's processes end with the
thread that started them (they are bound to it with PDEATHSIG), so the factory thread, which
ends, must not start them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from pathlib import Path
from typing import Any

from backend.cluster.actor import EngineBuilder, GpuWorker, diffsynth_engine
from backend.cluster.remote_engine import RayEngine
from backend.config import ClusterConfig, EngineSettings
from backend.engine.protocol import Engine, EngineSource
from backend.errors import StartupError

log = logging.getLogger("majicbot.cluster")

NAMESPACE = "majicbot"
PRIVATE_OBJECT_STORE_BYTES = 512 * 1024**2  # results are a few MB of PNG each
ACTOR_CONCURRENCY = 4  # generate, cancel, state and describe at the same time


class RayCluster:
    """The actors of this service. ``start``/``discover``/``close`` block (threads only)."""

    def __init__(
        self, cluster: ClusterConfig, settings: EngineSettings, build: EngineBuilder
    ) -> None:
        self._cluster = cluster
        # Actors on other hosts start in other folders: paths travel absolute (the weights must
        # be at the same absolute path on every GPU host, README "More GPUs on more hosts").
        self._settings = dataclasses.replace(
            settings,
            engine=dataclasses.replace(
                settings.engine,
                models_dir=settings.engine.models_dir.absolute(),
                dit_path=str(Path(settings.engine.dit_path).absolute())
                if settings.engine.dit_path
                else "",
            ),
            data_dir=settings.data_dir.absolute(),
        )
        self._build = build
        self.engines: list[RayEngine] = []
        self._lock = threading.Lock()
        self._private: threading.Event | None = None  # set to end the private Ray's thread

    def source(self) -> EngineSource:
        every = self._cluster.discover_every_s if self._cluster.workers == 0 else 0.0
        return EngineSource(self.start, self.discover, every, self.close)

    def start(self) -> list[Engine]:
        """Connect, then one actor per worker wanted (they load when their worker asks)."""
        self._connect()
        engines = self.discover()
        if not engines:
            log.warning(
                "the Ray cluster offers no GPU for a worker yet; waiting for nodes to join "
                "(ray start --address=... on a GPU host)"
            )
        return engines

    def discover(self) -> list[Engine]:
        """Actors for the workers wanted that do not exist yet."""
        with self._lock:
            missing = self.wanted() - len(self.engines)
            new = [self._spawn(len(self.engines) + i + 1) for i in range(max(0, missing))]
            self.engines.extend(new)
        return list(new)

    def wanted(self) -> int:
        """``workers`` if set, else one per ``gpus_per_worker`` GPUs the cluster has now."""
        import ray

        if self._cluster.workers:
            return self._cluster.workers
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        return math.floor(gpus / self._cluster.gpus_per_worker + 1e-9)

    def close(self) -> None:
        """Kill the actors; stop the private Ray if this process started it."""
        import ray

        for engine in self.engines:
            engine.close()
        if self._private is not None:
            ray.shutdown()
            self._private.set()

    def _spawn(self, number: int) -> RayEngine:
        import ray

        cluster = self._cluster
        actor_class: Any = ray.remote(GpuWorker)
        actor = actor_class.options(
            num_gpus=cluster.gpus_per_worker,
            num_cpus=cluster.cpus_per_worker,
            max_restarts=cluster.max_restarts,
            max_task_retries=0,  # a job in flight is re-queued by the service, never re-run here
            max_concurrency=ACTOR_CONCURRENCY,
        ).remote(self._settings, self._build)
        return RayEngine(f"ray-{number}", actor)

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():  # embedded (tests, a host program): use the Ray it started
            log.info("using the Ray already initialised in this process")
            return
        address = self._cluster.address
        options: dict[str, Any] = {
            "namespace": NAMESPACE,
            "logging_level": logging.WARNING,
            "log_to_driver": True,
        }
        if address:
            try:
                ray.init(address=address, **options)
            except Exception as exc:
                raise StartupError(f"cannot join the Ray cluster at {address!r}: {exc}") from exc
            log.info("joined the Ray cluster at %s", address)
            return
        started, failed = threading.Event(), []
        self._private = threading.Event()

        def hold(stop: threading.Event) -> None:
            try:
                ray.init(  # a new Ray, even where RAY_ADDRESS or `ray start` point to one
                    address="local",
                    include_dashboard=False,
                    object_store_memory=PRIVATE_OBJECT_STORE_BYTES,
                    **options,
                )
            except Exception as exc:
                failed.append(exc)
            finally:
                started.set()
            stop.wait()

        holder = threading.Thread(
            target=hold, args=(self._private,), name="majicbot-ray", daemon=True
        )
        holder.start()
        started.wait()
        if failed:
            raise StartupError(f"cannot start a local Ray: {failed[0]}") from failed[0]
        log.info("started a private Ray on this host")


def ray_source(
    cluster: ClusterConfig, settings: EngineSettings, build: EngineBuilder = diffsynth_engine
) -> EngineSource:
    """The engine source of ``cluster.backend = "ray"``."""
    return RayCluster(cluster, settings, build).source()
