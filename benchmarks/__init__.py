"""novaconsole's benchmarks: ``python -m benchmarks [--quick]`` prints one table.

Each benchmark compares novaconsole with a hand-written baseline measured in the same run,
interleaved and repeated (best of ``--repeat``), because these machines are noisy. They are
not tests: ``tests/benchmarks`` only runs them with tiny sizes to keep them working.
"""
