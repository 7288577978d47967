"""majicbot backend: the service that owns the GPU.

Importing this package must stay cheap: no torch, no diffsynth, no I/O.
"""
