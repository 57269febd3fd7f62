"""TLS for real: stunnel (Debian's ``stunnel4``) in front of the embedded broker.

The broker advertises stunnel's port, so every connection the clients make,
the bootstrap and the ones to the advertised broker after it, goes through
TLS. The certificates are made here, for this run: a throwaway CA, a server
certificate it signs for localhost and 127.0.0.1, one it signs for another
name, and a second CA that signed nothing of the broker's.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from events.errors import CertificateRefusedError
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker, free_port
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings, SecuritySettings
from events.transport.types import TP
from events.wire.messages import MessageCodec
from tests.conftest import settings_for
from tests.events.transport.test_publisher import command

pytestmark = pytest.mark.broker

#: Certificates valid this long (days) from when the test makes them.
DAYS = "2"
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def stunnel_binary() -> str:
    for name in ("stunnel4", "stunnel"):
        found = shutil.which(name)
        if found is not None:
            return found
    pytest.fail(
        "this test needs stunnel: apt-get install stunnel4 (tests/setup.sh installs it)"
    )


def openssl(directory: Path, *args: str) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("this test needs the openssl command (Debian's stunnel4 has it)")
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Path:
    openssl(
        directory, "req", "-x509", *EC, "-keyout", f"{name}.key",
        "-out", f"{name}.pem", "-days", DAYS, "-subj", f"/CN=saga test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return directory / f"{name}.pem"


def make_server_cert(directory: Path, ca: str, name: str, dns: str, ip: str) -> Path:
    """``name``.pem and ``name``.key: a server certificate signed by ``ca``."""
    (directory / f"{name}.ext").write_text(
        f"subjectAltName = DNS:{dns}" + (f", IP:{ip}" if ip else "") + "\n"
        "basicConstraints = CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "authorityKeyIdentifier = keyid, issuer\n"
    )
    openssl(
        directory, "req", "-new", *EC, "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", f"/CN={dns}",
    )  # fmt: skip
    openssl(
        directory, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem",
        "-CAkey", f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem",
        "-days", DAYS, "-extfile", f"{name}.ext",
    )  # fmt: skip
    return directory / f"{name}.pem"


class Stunnel:
    """stunnel terminating TLS on each ``accept`` port, forwarding to ``target``.

    ``services`` maps a name to (accept port, certificate); each certificate's
    key is beside it (``.key``).
    """

    def __init__(
        self, directory: Path, target: int, services: dict[str, tuple[int, Path]]
    ) -> None:
        config = directory / "stunnel.conf"
        lines = ["foreground = yes", "pid =", "debug = 5"]
        for name, (port, cert) in services.items():
            lines += [
                f"[{name}]",
                f"accept = 127.0.0.1:{port}",
                f"connect = 127.0.0.1:{target}",
                f"cert = {cert}",
                f"key = {cert.with_suffix('.key')}",
            ]
        config.write_text("\n".join(lines) + "\n")
        self.log = directory / "stunnel.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [stunnel_binary(), str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            for port, _ in services.values():
                self._wait_listening(port)
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, port: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"stunnel exited at start: {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"stunnel did not listen on {port}: {self.output()}")
                time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def count(self, text: str) -> int:
        return self.output().count(text)

    def wait_count(self, text: str, more_than: int, timeout_s: float = 10.0) -> int:
        """How often ``text`` is in the log, once more than ``more_than``:
        stunnel writes its log in its own time, after the client has moved on."""
        deadline = time.monotonic() + timeout_s
        while (found := self.count(text)) <= more_than:
            if time.monotonic() > deadline:
                pytest.fail(f"stunnel never logged {text!r}: {self.output()}")
            time.sleep(0.05)
        return found

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass(frozen=True)
class TlsKafka:
    stunnel: Stunnel
    #: The broker's TLS address (its advertised listener).
    tls: str
    #: stunnel's port presenting a certificate for another name.
    misnamed: str
    ca: Path
    other_ca: Path

    def settings(
        self, cafile: Path, *, bootstrap: str | None = None, check_hostname: bool = True
    ) -> KafkaSettings:
        settings = settings_for(bootstrap or self.tls)
        security = SecuritySettings(
            protocol="SSL", ssl_cafile=str(cafile), ssl_check_hostname=check_hostname
        )
        return msgspec.structs.replace(
            settings, security=security, connect_timeout_ms=10_000
        )


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    directory = tmp_path_factory.mktemp("tls")
    ca = make_ca(directory, "ca")
    other_ca = make_ca(directory, "other-ca")
    server = make_server_cert(directory, "ca", "server", "localhost", "127.0.0.1")
    misnamed = make_server_cert(directory, "ca", "misnamed", "elsewhere.invalid", "")
    tls_port, misnamed_port = free_port(), free_port()
    with EmbeddedBroker(advertised_port=tls_port) as broker:
        stunnel = Stunnel(
            directory,
            broker.port,
            {"kafka": (tls_port, server), "misnamed": (misnamed_port, misnamed)},
        )
        try:
            yield TlsKafka(
                stunnel,
                f"127.0.0.1:{tls_port}",
                f"127.0.0.1:{misnamed_port}",
                ca,
                other_ca,
            )
        finally:
            stunnel.stop()


#: In stunnel's log line for a handshake the client ended with an alert (it
#: refused the certificate): "SSL routines::tlsv1 alert unknown ca", say.
ALERT = " alert "
UNKNOWN_CA = "alert unknown ca"
ACCEPTED = "Service [kafka] accepted connection"


def test_the_platforms_clients_work_through_tls_with_the_hostname_checked(
    tls_kafka: TlsKafka,
) -> None:
    settings = tls_kafka.settings(tls_kafka.ca)
    assert settings.security.ssl_check_hostname
    before = tls_kafka.stunnel.count(ACCEPTED)
    refusals = tls_kafka.stunnel.count(ALERT)
    topic = f"t{uuid.uuid4().hex[:12]}.events.tls"
    with TopicAdmin(settings) as admin:
        admin.ensure_topics([topic], partitions=1)
        assert admin.partition_counts()[topic] == 1
    sent = command(f"saga-{uuid.uuid4().hex[:8]}", 1)
    with KafkaMessagePublisher(settings) as publisher:
        [ack] = publisher.publish_batch([(topic, sent)])
    with PartitionReader(settings) as reader:
        [record] = list(reader.read({TP(topic, 0): 0}))
    assert (record.topic, record.offset) == (ack.topic, ack.offset)
    assert MessageCodec().decode(record.value) == sent
    # Through stunnel (three clients, each at least a bootstrap connection),
    # and no handshake refused.
    assert tls_kafka.stunnel.wait_count(ACCEPTED, before + 2) >= before + 3
    assert tls_kafka.stunnel.count(ALERT) == refusals


def test_a_wrong_ca_is_refused_at_once_naming_the_ca_file_and_the_broker(
    tls_kafka: TlsKafka,
) -> None:
    """Before, this waited out connect_timeout_ms and said "no Kafka broker
    answered ... check bootstrap_servers"."""
    settings = tls_kafka.settings(tls_kafka.other_ca)
    timeout_s = settings.connect_timeout_ms / 1000
    connect = {
        "admin": lambda: TopicAdmin(settings),
        "publisher": lambda: KafkaMessagePublisher(settings),
        "reader": lambda: PartitionReader(settings),
    }
    for name, client in connect.items():
        refusals = tls_kafka.stunnel.count(UNKNOWN_CA)
        started = time.monotonic()
        with pytest.raises(CertificateRefusedError) as caught:
            client()
        elapsed = time.monotonic() - started
        assert elapsed < timeout_s / 4, f"{name} took {elapsed:.1f} s"
        message = str(caught.value)
        assert "certificate of the Kafka broker at " + tls_kafka.tls in message
        assert "was refused" in message
        assert str(tls_kafka.other_ca) in message
        assert "ssl_cafile" in message
        assert "bootstrap_servers" not in message
        # The fault fired: the client's own check refused the certificate
        # (the cause is the ssl module's verification error), and stunnel,
        # still running, saw the handshake end with the client's "unknown CA".
        cause = caught.value.__cause__
        assert cause is not None
        assert isinstance(cause.__cause__, ssl.SSLCertVerificationError)
        assert tls_kafka.stunnel.alive()
        assert tls_kafka.stunnel.wait_count(UNKNOWN_CA, refusals) > refusals


def test_the_hostname_is_checked(tls_kafka: TlsKafka) -> None:
    """A certificate from the right CA for another name is refused; with
    ssl_check_hostname off the same bootstrap works (and the broker's
    advertised, correctly named listener serves the rest)."""
    checked = tls_kafka.settings(tls_kafka.ca, bootstrap=tls_kafka.misnamed)
    refusals = tls_kafka.stunnel.count(ALERT)
    with pytest.raises(CertificateRefusedError) as caught:
        TopicAdmin(checked)
    message = str(caught.value)
    assert "mismatch, certificate is not valid for '127.0.0.1'" in message
    assert f"broker at {tls_kafka.misnamed} was refused" in message
    assert tls_kafka.stunnel.alive()
    assert tls_kafka.stunnel.wait_count(ALERT, refusals) > refusals
    unchecked = tls_kafka.settings(
        tls_kafka.ca, bootstrap=tls_kafka.misnamed, check_hostname=False
    )
    with TopicAdmin(unchecked) as admin:
        assert isinstance(admin.partition_counts(), dict)


def test_one_bootstrap_server_refused_does_not_stop_a_client_another_takes(
    tls_kafka: TlsKafka,
) -> None:
    """Bootstrap servers are tried in a random order: a client whose first try
    meets a certificate it refuses (here, made out for another name) goes on
    to the next, and is refused only if every one is."""
    settings = msgspec.structs.replace(
        tls_kafka.settings(tls_kafka.ca),
        bootstrap_servers=(tls_kafka.misnamed, tls_kafka.tls),
    )
    refused = tls_kafka.stunnel.count(ALERT)
    # Each client picks its first server at random, and its next after a
    # refusal: over 30 clients both orders come up (a miss: about 2**-30).
    for _ in range(30):
        with TopicAdmin(settings) as admin:  # connects, whichever came first
            assert isinstance(admin.partition_counts(), dict)
    # The fault fired: the misnamed server's certificate was refused.
    assert tls_kafka.stunnel.wait_count(ALERT, refused) > refused
