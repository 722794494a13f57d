"""wirekit's benchmarks: wirekit and the peer tools side by side, reported as ratios.

Run with ``make bench`` (``python -m bench [echo|forward|all] [--runs 3] [--quick]``).
Everything runs on loopback, for a bounded time, and stops only processes it started.
"""
