"""Benchmarks of the course: cnnlib's ops and training loop against PyTorch's, autograding,
and the book build. Run with `make bench` or `python -m benchmarks --help`.

Every comparison is timed side by side in one process, interleaved and repeated, and reported
as a ratio of medians, so that load from other processes hits both sides alike.
"""
