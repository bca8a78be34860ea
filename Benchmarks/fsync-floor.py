#!/usr/bin/env python3
"""The disk's floor for durable single-insert commits: 1,000 rounds of one write and one
fdatasync into a zero-filled file, for commits of one, two and three 4 KiB log frames.

Usage: Benchmarks/fsync-floor.py [DIRECTORY] [ROUNDS]
(default: the current directory, 7 rounds). Prints each size's times and median in ms.
"""
import os
import statistics
import sys
import time

directory = sys.argv[1] if len(sys.argv) > 1 else "."
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
path = os.path.join(directory, "fsync-floor.tmp")
frame = 4096 + 32  # a PartitionDB log frame: its header and one page
sizes = [frame, 2 * frame, 3 * frame]
commits = 1000

fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    # Written zeros, not a sparse or fallocated file: overwriting blocks that exist is what both
    # engines' logs do once they have grown.
    os.pwrite(fd, bytes(commits * sizes[-1] + (1 << 20)), 0)
    os.fsync(fd)
    times = {size: [] for size in sizes}
    for _ in range(rounds):
        for size in sizes:
            data = os.urandom(size)
            start = time.perf_counter()
            for i in range(commits):
                os.pwrite(fd, data, i * size)
                os.fdatasync(fd)
            times[size].append((time.perf_counter() - start) * 1000)
    for size in sizes:
        values = ", ".join(f"{t:.0f}" for t in times[size])
        print(f"{size:6d}-byte commits: {commits} in [{values}] ms, median {statistics.median(times[size]):.0f} ms")
finally:
    os.close(fd)
    os.unlink(path)
