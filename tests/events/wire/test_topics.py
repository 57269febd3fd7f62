from __future__ import annotations

import pytest

from events.errors import InvalidTopicNameError, TopicConfigError
from events.wire.topics import (
    ALL_TOPICS,
    COMMAND_TOPICS,
    EVENT_TOPICS,
    KEEP_FOREVER_CONFIGS,
    Direction,
    command_topic,
    parse_topic,
    retention_problems,
)


def test_catalog_holds_every_topic_of_the_design() -> None:
    assert {
        "account.commands.deposit", "payment.commands.process",
        "user.commands.verify", "payment.commands.refund",
        "account.events.deposit", "payment.events.process",
        "user.events.verify", "payment.events.refund",
        "saga.requests", "saga.events", "saga.snapshots", "saga.dlq",
        "saga.dlq.actions",
    } == set(ALL_TOPICS)  # fmt: skip
    assert len(ALL_TOPICS) == len(set(ALL_TOPICS))


def test_every_service_topic_follows_the_naming_rule() -> None:
    for name in COMMAND_TOPICS + EVENT_TOPICS:
        assert parse_topic(name).name == name
    assert parse_topic("payment.commands.process").direction is Direction.COMMANDS
    assert parse_topic("payment.commands.refund").reply.name == "payment.events.refund"


@pytest.mark.parametrize(
    "name",
    ["payment.process", "Payment.commands.process", "payment.command.process",
     "payment.commands.", ".events.x", "payment.events.process.extra", "a b.events.c"],
)  # fmt: skip
def test_bad_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidTopicNameError, match=r"<service>\.commands"):
        parse_topic(name)


def test_only_a_commands_topic_has_a_reply() -> None:
    with pytest.raises(InvalidTopicNameError):
        _ = parse_topic("user.events.verify").reply
    assert command_topic("user", "verify") == "user.commands.verify"


def test_the_record_topics_must_keep_every_message() -> None:
    assert retention_problems("saga.events", KEEP_FOREVER_CONFIGS) == []
    finite = {"retention.ms": "604800000", "retention.bytes": "-1"}
    assert retention_problems("saga.events", finite) == [
        "saga.events has retention.ms=604800000 (must be -1)"
    ]
    compacted = {"cleanup.policy": "compact"}
    assert retention_problems("saga.snapshots", compacted) == [
        "saga.snapshots has cleanup.policy=compact (must be delete)"
    ]
    assert retention_problems("saga.dlq", {"retention.bytes": "1024"}) != []
    # A service topic may expire: only the platform's record is judged.
    assert retention_problems("payment.commands.process", finite) == []
    # A config the broker does not report is not judged.
    assert retention_problems("saga.events", {}) == []


def test_a_topic_that_would_lose_records_says_how_to_fix_it() -> None:
    error = TopicConfigError(["saga.events has retention.ms=1 (must be -1)"])
    assert "saga.events has retention.ms=1" in str(error)
    assert "kafka-configs.sh --alter" in str(error)
    assert "retention.ms=-1" in str(error)
