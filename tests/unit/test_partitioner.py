"""healer.partitioner agrees with Kafka's default partitioner (aiokafka's copy of it)."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner, murmur2

from healer.partitioner import PartitionCache, partition_for
from healer.partitioner import murmur2 as ours


def test_murmur2_and_partition_match_kafka() -> None:
    rng = random.Random(3)
    parts = list(range(12))
    for _ in range(3000):
        key = rng.randbytes(rng.randrange(0, 70))
        assert ours(key) == murmur2(key)
        for n in (1, 6, 12):
            assert partition_for(key, n) == DefaultPartitioner()(key, parts[:n], parts[:n])


def test_cache_is_bounded() -> None:
    c = PartitionCache(6, capacity=10)
    for i in range(100):
        assert c(f"k{i}") == partition_for(f"k{i}".encode(), 6)
    assert len(c._cache) == 10
