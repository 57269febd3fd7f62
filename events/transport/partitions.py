"""Which partition a sagaId lives on: the same number on every topic.

The Java client's rule (murmur2 of the key, sign bit cleared, modulo the
partition count), which kafka-python shares. Producers here name the partition
explicitly instead of trusting each client's default partitioner: librdkafka's
default (crc32) would put the same key elsewhere.
"""

from __future__ import annotations

from functools import lru_cache

from kafka.partitioner.default import murmur2


def home_partition(saga_id: str, partitions: int) -> int:
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    return _hash(saga_id) % partitions


# kafka-python's murmur2 is pure Python (6 µs a key here), and the router and
# the hosts hash a saga's id again at each of its inputs: one in flight stays
# cached.
@lru_cache(maxsize=16_384)
def _hash(saga_id: str) -> int:
    return int(murmur2(saga_id.encode()) & 0x7FFFFFFF)
