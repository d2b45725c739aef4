"""The demo, and only the demo: its catalog, its cluster's roles and replica, its Redis, and `manage.py seed_demo`.

`make up`, the test suite and the benchmarks use it; production code never imports it.
"""
