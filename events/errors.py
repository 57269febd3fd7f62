"""Errors of the wire and transport layer.

Every error this package raises is an :class:`EventsError`, so a caller can catch
the whole layer at once and still match on the typed subclasses below.
"""

from __future__ import annotations

from collections.abc import Sequence


class EventsError(Exception):
    """Base of every error raised by the ``events`` package."""


# --- decoding --------------------------------------------------------------------


class MessageDecodeError(EventsError):
    """Bytes that are not a valid message.

    Keeps the raw bytes so the message can be dead-lettered as it arrived, and
    names the offending field (a JSON path such as ``sagaId`` or ``payload.amount``)
    where one can be named.
    """

    def __init__(self, reason: str, raw: bytes, field: str | None = None) -> None:
        where = f" (field {field!r})" if field else ""
        super().__init__(f"cannot decode message{where}: {reason}")
        self.reason = reason
        self.raw = raw
        self.field = field


class NotJsonError(MessageDecodeError):
    """The bytes are not a JSON document (or not UTF-8)."""


class UnknownMessageTypeError(MessageDecodeError):
    """The ``type`` field is missing or names no known message type."""


class MissingFieldError(MessageDecodeError):
    """A required field is absent."""


class InvalidFieldError(MessageDecodeError):
    """A field is present but has the wrong type or an invalid value.

    A ``timestamp`` that is not an RFC 3339 time with a zone lands here too.
    """


class TooDeeplyNestedError(InvalidFieldError):
    """Arrays and objects nested deeper than the limit (see :mod:`events.wire.nesting`).

    Refused before decoding: a decoder recursing that deep would fail with an
    untyped ``RecursionError``, or take the whole thread down with it.
    """

    def __init__(self, depth: int, limit: int, raw: bytes = b"") -> None:
        super().__init__(
            f"nesting depth {depth} exceeds the limit of {limit} levels of arrays "
            "and objects; refused before decoding",
            raw,
        )
        self.depth = depth
        self.limit = limit


class MessageTooLargeError(MessageDecodeError):
    """The message is larger than the configured size limit."""

    def __init__(self, size: int, limit: int, raw: bytes = b"") -> None:
        super().__init__(
            f"{size} bytes exceeds the limit of {limit} bytes "
            "(raise kafka.max_message_bytes if such messages are legitimate)",
            raw,
        )
        self.size = size
        self.limit = limit


class InvalidTopicNameError(EventsError):
    """A topic name that does not follow ``<service>.commands|events.<action>``."""


# --- the broker and its clients ----------------------------------------------------


class BrokerUnavailableError(EventsError):
    """No broker answered within the configured time."""

    def __init__(self, servers: str, timeout_ms: int, cause: BaseException) -> None:
        super().__init__(
            f"no Kafka broker answered at {servers} within {timeout_ms / 1000:g} s "
            f"({type(cause).__name__}): check kafka.bootstrap_servers and that the "
            "broker is running (or leave bootstrap_servers empty to use the "
            "embedded broker)"
        )
        self.servers = servers
        self.timeout_ms = timeout_ms


class CertificateRefusedError(EventsError):
    """The client refused a broker's TLS certificate: waiting will not fix it."""

    def __init__(self, server: str, cafile: str | None, reason: str) -> None:
        trusted = (
            f"the CA file {cafile} (kafka.security.ssl_cafile)"
            if cafile
            else "the system's CAs (kafka.security.ssl_cafile is not set)"
        )
        host = server.rsplit(":", 1)[0]
        super().__init__(
            f"the TLS certificate of the Kafka broker at {server} was refused "
            f"({reason}), checked against {trusted}: check that ssl_cafile holds "
            "the CA that signed the broker's certificate, that the certificate "
            f"is valid today, and that it names {host}, the host the client "
            "connects to (kafka.security.ssl_check_hostname)"
        )
        self.server = server
        self.cafile = cafile
        self.reason = reason


class MissingTopicError(EventsError):
    """Topics that must exist do not."""

    def __init__(self, topics: list[str]) -> None:
        super().__init__(
            f"topics do not exist: {', '.join(sorted(topics))}; "
            "create them with `saga topics create`"
        )
        self.topics = topics


class TopicPartitionMismatchError(EventsError):
    """Existing topics whose partition count differs from the configured one.

    Never accepted silently: every saga topic must have the same partition count,
    or one sagaId would map to different partitions on different topics.
    """

    def __init__(self, mismatches: dict[str, tuple[int, int]]) -> None:
        detail = ", ".join(
            f"{name} has {actual} partitions, configured {wanted}"
            for name, (actual, wanted) in sorted(mismatches.items())
        )
        super().__init__(
            f"partition count mismatch: {detail}; set kafka.topics.partitions to "
            "match the cluster, or recreate the topics"
        )
        self.mismatches = mismatches


class TopicConfigError(EventsError):
    """A platform topic is configured to lose records the platform needs."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "topics would lose records the saga platform needs: "
            + "; ".join(problems)
            + ". Set them on the cluster, e.g. kafka-configs.sh --alter --entity-type "
            "topics --entity-name saga.events --add-config retention.ms=-1,"
            "retention.bytes=-1,cleanup.policy=delete"
        )
        self.problems = problems


class PublishError(EventsError):
    """Records the broker did not acknowledge.

    ``results`` holds, in the order they were given, each record's
    acknowledgement or the error it failed with.
    """

    def __init__(self, results: Sequence[object]) -> None:
        errors = [r for r in results if isinstance(r, BaseException)]
        first = errors[0] if errors else EventsError("unknown")
        super().__init__(
            f"{len(errors)} of {len(results)} messages were not acknowledged by "
            f"Kafka; first error: {type(first).__name__}: {first}"
        )
        self.results = list(results)
        self.failed = len(errors)
        self.total = len(results)
        self.first = first


class BrokerStartError(EventsError):
    """The embedded broker could not be started."""


class BrokerPauseError(EventsError):
    """The embedded broker did not stop when paused (a fault test's pause)."""


# --- services ----------------------------------------------------------------------


class ServiceUnavailableError(EventsError):
    """A handler cannot work now, and it is not the message's fault.

    Raised for its database or disk failing (see
    :class:`events.service.CommandService`): the service dead-letters nothing,
    backs off and gets the same batch again, where any other handler error
    counts against the message and ends in a dead letter once retries run out.
    """


# --- a log that lost records -------------------------------------------------------


class LogLostError(EventsError):
    """The broker no longer holds records the platform already read or wrote: a
    log that went backwards (its end below an offset read or acknowledged), a
    topic or cluster that is not the one the platform started on, or records
    removed before they were read.

    Waiting cannot fix it and carrying on would act on a partial history, so the
    component that meets it stops taking input and reports it. Restore the
    broker's data (or, knowing what was lost, start the platform anew on fresh
    topics).
    """

    def __init__(self, what: str) -> None:
        super().__init__(
            f"the broker lost saga data: {what}. The affected component stopped; "
            "restore the broker's data, or start the platform anew on fresh topics "
            "knowing what was lost"
        )
        self.what = what

    def __reduce__(self) -> tuple[type[LogLostError], tuple[str]]:
        # Rebuilt from ``what`` alone when it crosses processes (a Ray call).
        return (type(self), (self.what,))
