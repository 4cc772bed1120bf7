"""Running and operating jobq: the ``jobq`` command, the local stack, Flower, benchmarks."""
