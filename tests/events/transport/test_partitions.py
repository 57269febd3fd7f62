"""The home partition of a sagaId: the Java client's rule, on every call."""

from __future__ import annotations

import pytest

from events.transport.partitions import home_partition

#: murmur2 of each key as Kafka's own tests give it (``UtilsTest.testMurmur2``).
JAVA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize("partitions", [1, 6, 7, 24, 1000])
def test_the_partition_is_the_java_clients_and_the_same_when_asked_again(
    partitions: int,
) -> None:
    for key, hashed in JAVA_MURMUR2.items():
        expected = (hashed & 0x7FFFFFFF) % partitions
        assert home_partition(key, partitions) == expected
        # The second answer comes from the cache: it must not differ.
        assert home_partition(key, partitions) == expected


def test_a_partition_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="partitions must be positive, got 0"):
        home_partition("abc", 0)
