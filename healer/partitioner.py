"""Which partition a key belongs to: the rule of Kafka's default partitioner.

The worker packs many signals (and many audit entries) into one Kafka record
per destination partition, so it must know the partition of each key itself
instead of letting the producer hash the record key. It uses the rule every
Kafka client applies to keyed records (murmur2 of the key bytes, sign bit
cleared, modulo the partition count), so a target lands on the partition a
keyed record for it would: its table rows and its signals stay together, and
Kafka tooling that hashes a target key finds the same partition.

Pure; called by the ingest and decide planners and the runner's audit writer.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 (32 bit) as Kafka's Java client computes it."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length // 4
    if words:
        for (k,) in struct.iter_unpack("<I", data[: words * 4]):
            k = (k * _M) & _MASK
            k ^= k >> 24
            k = (k * _M) & _MASK
            h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    base = words * 4
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record with ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class PartitionCache:
    """``partition_for`` remembered for recently seen keys (targets repeat; hashing
    in Python costs microseconds). Bounded: the oldest keys are forgotten first."""

    def __init__(self, partitions: int, capacity: int = 100_000) -> None:
        if partitions < 1:
            raise ValueError("a topic has at least one partition")
        self.partitions = partitions
        self.capacity = capacity
        self._cache: OrderedDict[str, int] = OrderedDict()

    def __call__(self, key: str) -> int:
        got = self._cache.get(key)
        if got is None:
            got = partition_for(key.encode(), self.partitions)
            self._cache[key] = got
            if len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return got
