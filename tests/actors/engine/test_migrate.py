"""A host with version 2 of the deposit saga deployed (version 1 kept): sagas
started before run on to their end on 1, new ones start on 2, and a migrate
request moves one from its step (real broker; the router's hop is taken by
handing the host the records)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import pytest

from actors.core import MigrateRequest, migrate_message
from actors.engine.claims import own
from actors.engine.host import SagaHost
from actors.engine.inbound import Inbound
from actors.engine.router import listened_topics
from events.transport.admin import TopicAdmin
from events.transport.settings import KafkaSettings
from events.wire.messages import MessageCodec
from tests.actors.core.test_versions import V2
from tests.actors.engine.test_host import PARTITIONS, Clock, _answer, commands, start
from tests.conftest import private_kafka

pytestmark = pytest.mark.broker

CODEC = MessageCodec()


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(PARTITIONS) as settings:
        # Version 2's step talks to a topic of its own.
        with TopicAdmin(settings) as admin:
            admin.ensure_topics(
                ["payment.commands.limits", "payment.events.limits"],
                partitions=PARTITIONS,
            )
        yield settings


def test_old_sagas_finish_on_their_version_and_a_migrate_moves_one(
    kafka: KafkaSettings,
) -> None:
    clock = Clock()
    old = own(SagaHost(kafka, PARTITIONS, clock=clock, start_timers=False),
              range(PARTITIONS))  # fmt: skip
    try:
        old.handle([start("s-old", 1), start("s-moved", 2)])
    finally:
        old.close()
    deployed = own(
        SagaHost(kafka, PARTITIONS, definitions={"deposit": V2}, clock=clock,
                 start_timers=False),
        range(PARTITIONS),
    )  # fmt: skip
    try:
        deployed.handle([start("s-new", 3)])
        moved = migrate_message(
            "s-moved",
            "m-1",
            MigrateRequest(reason="new limits", operator="ana@desk", version=2),
            datetime.now(UTC),
        )
        report = deployed.handle(
            [Inbound("saga.requests", 0, 4, "s-moved", CODEC.encode(moved))]
        )
        assert report.applied == 1
        state = deployed.state("s-moved")
        assert state is not None and state.version == 2
        assert deployed.state("s-old").version == 1  # type: ignore[union-attr]
        assert deployed.state("s-new").version == 2  # type: ignore[union-attr]
        deployed.handle(
            [
                _answer(saga_id, "verify_user", "user.events.verify", n)
                for n, saga_id in enumerate(["s-old", "s-moved", "s-new"], 5)
            ]
        )
    finally:
        deployed.close()
    to_limits = {c.saga_id for c in commands(kafka, "payment.commands.limits")}
    to_payment = {c.saga_id for c in commands(kafka, "payment.commands.process")}
    assert (to_limits, to_payment) == ({"s-moved", "s-new"}, {"s-old"})


def test_routers_listen_to_the_replies_of_every_version_still_running() -> None:
    # A version 2 that only verifies and checks limits: version 1's sagas still
    # pay, refund and deposit, and their replies must still reach them.
    checks_only = msgspec.structs.replace(V2, steps=V2.steps[:2])
    topics = set(listened_topics({"deposit": checks_only}))
    assert {"payment.events.limits", "payment.events.process",
            "payment.events.refund", "account.events.deposit"} <= topics  # fmt: skip
