"""Process-level concerns, apart from the method: devices (device.py), CPU threads and numpy's
BLAS limit (threads.py), lanes (lanes.py), tile prefetching (prefetch.py), the malloc setting
(allocator.py), the per-worker model cache (models.py) and Dask clusters (cluster.py)."""
