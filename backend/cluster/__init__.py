"""GPU workers on other hosts: each engine in a Ray actor (``cluster.backend = "ray"``).

``ray_cluster`` connects to Ray and starts one ``actor.GpuWorker`` per GPU the cluster offers;
``remote_engine.RayEngine`` is the service-side ``Engine`` over one actor, so the worker pool,
the fair queue, the store and delivery stay exactly as with local engines. Importing this package
imports neither ray nor torch.
"""
