"""Finding 9: checks and webhooks cannot be turned on the machine's own or its cloud's internal endpoints.

Refused when saved (the check form, the service form's restart webhook, the admin's contact webhook, the
catalog import's alert channels) and again when connecting (the real probe, the real alert delivery), against
what the name resolves to at that moment.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.urls import reverse

from hadr_portal.adapters import netguard
from hadr_portal.core.catalog import CatalogError, catalog_import
from hadr_portal.core.permissions import Role
from hadr_portal.incidents.models import Contact
from hadr_portal.status.engine import checks_run
from hadr_portal.status.models import AlertChannel, AlertDelivery, Check, Service, Transition
from tests.status.factories import http_target, make_check, make_service

METADATA = "169.254.169.254 is a link-local / cloud metadata address: refused"
CHECK_FIELDS = {
    "name": "api",
    "kind": "http",
    "enabled": "on",
    "interval_seconds": "30",
    "timeout_seconds": "5",
    "failures_before_down": "2",
    "expected_status": "200",
}


@pytest.fixture
def shop(db) -> Service:
    return make_service("shop", tier=1, display_name="Shop front")


def post_check(client, **fields: str):
    return client.post(reverse("status:check-new", kwargs={"name": "shop"}), CHECK_FIELDS | fields)


# --- at save time ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://169.254.169.254/latest/meta-data/", METADATA),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is a cloud metadata address: refused"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe (169.254.169.254) is a link-local / cloud metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal is a cloud metadata host"),
        ("http://0.0.0.0:8000/", "0.0.0.0 is an unspecified address: refused"),
    ],
)
def test_devops_cannot_point_an_http_check_at_cloud_metadata(client_as, shop, url, message):
    """Even where loopback and private networks are allowed (the test environment allows them)."""
    devops = client_as(Role.DEVOPS)
    response = post_check(devops, url=url)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Check.objects.filter(name="api").exists()


def test_loopback_and_private_targets_need_the_setting(client_as, shop, settings):
    devops = client_as(Role.DEVOPS)
    settings.ALLOW_PRIVATE_TARGETS = False
    for url, said in (
        ("http://127.0.0.1:9/", "127.0.0.1 is a loopback address: refused"),
        ("http://2130706433:9/", "127.0.0.1 is a loopback address: refused"),  # 127.0.0.1 as one number
        ("http://localhost:9/", "localhost is a loopback host name: refused"),
        ("http://10.1.2.3/health", "10.1.2.3 is a private network address: refused"),
    ):
        response = post_check(devops, url=url)
        assert response.status_code == 400, url
        assert said in response.content.decode() and "HADR_ALLOW_PRIVATE_TARGETS=true" in response.content.decode()
    tcp = post_check(devops, kind="tcp", host="127.0.0.1", port="5432")
    assert tcp.status_code == 400 and "127.0.0.1 is a loopback address: refused" in tcp.content.decode()
    assert not Check.objects.filter(name="api").exists()

    settings.ALLOW_PRIVATE_TARGETS = True
    assert post_check(devops, url="http://127.0.0.1:9/").status_code == 302
    assert Check.objects.get(name="api").config["url"] == "http://127.0.0.1:9/"


def test_a_restart_webhook_to_a_metadata_address_is_refused_by_the_service_form(client_as, shop):
    devops = client_as(Role.DEVOPS)
    fields = {"name": "shop", "display_name": "Shop front", "kind": "web", "tier": "1", "owner_role": "DevOps"}
    fields |= {"rto_minutes": "60", "rpo_minutes": "60", "restart_controller": "webhook"}
    fields |= {"restart_timeout_seconds": "60", "restart_wait_seconds": "120"}
    response = devops.post(
        reverse("status:service-edit", kwargs={"name": "shop"}),
        fields | {"restart_url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"},
    )
    assert response.status_code == 400
    assert METADATA in response.content.decode()
    assert Service.objects.get(name="shop").restart == {}


def test_a_contact_webhook_to_a_metadata_address_is_refused_in_the_admin(client_as):
    admin = client_as(superuser=True)
    response = admin.post(
        reverse("admin:incidents_contact_add"),
        {
            "name": "Dana",
            "roles": "[]",
            "webhook": "http://169.254.169.254/latest/user-data",
            "escalation_steps-TOTAL_FORMS": "0",
            "escalation_steps-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert METADATA in response.content.decode()
    assert not Contact.objects.exists()


def test_a_webhook_alert_channel_to_a_metadata_address_is_refused_at_save_and_at_send(db, shop, monkeypatch):
    channel = {"name": "chat", "kind": "webhook", "target": "http://169.254.169.254/latest/meta-data/"}
    with pytest.raises(CatalogError, match=rf"alert_channels\[0\] \(chat\)\.target: {METADATA}"):
        catalog_import({"alert_channels": [channel]})
    assert not AlertChannel.objects.exists()

    # The URL can also come from the environment, where no save-time check sees it: the send refuses it.
    AlertChannel.objects.create(name="chat", kind="webhook", address_env="HADR_CHAT_WEBHOOK")
    monkeypatch.setenv("HADR_CHAT_WEBHOOK", "http://169.254.169.254/latest/meta-data/")
    delivery = _alert_for(shop)
    delivery.refresh_from_db()
    assert delivery.status == AlertDelivery.Status.PENDING  # retried, as any failed delivery
    assert delivery.last_error == METADATA


def test_an_alert_webhook_whose_name_resolves_to_metadata_is_refused_when_sending(db, shop, monkeypatch):
    with http_target() as target:
        port = int(target.url.rsplit(":", 1)[1])
        _resolve_as(monkeypatch, "hooks.internal.test", "169.254.169.254")
        AlertChannel.objects.create(name="chat", kind="webhook", address=f"http://hooks.internal.test:{port}/hook")
        delivery = _alert_for(shop)
    delivery.refresh_from_db()
    assert "hooks.internal.test resolves to 169.254.169.254, a link-local / cloud metadata address" in (
        delivery.last_error
    )
    assert target.received == []


# --- at connect time ------------------------------------------------------------------------------


def test_a_name_resolving_to_a_metadata_address_is_refused_by_the_real_probe(db, shop, monkeypatch):
    """DNS rebinding: the name was harmless when saved; now it answers with the metadata address."""
    with listener() as (port, accepted):
        check = make_check(shop, config={"url": f"http://rebind.example.test:{port}/latest/meta-data/"})
        _resolve_as(monkeypatch, "rebind.example.test", "169.254.169.254")
        checks_run([check.pk])
    check.refresh_from_db()
    assert check.last_message == (
        "rebind.example.test resolves to 169.254.169.254, a link-local / cloud metadata address: refused"
    )
    assert not accepted


def test_a_name_with_one_refused_address_among_others_is_refused(db, shop, monkeypatch):
    """The resolver, not the portal, would pick which address is used: every one must pass."""
    with listener() as (port, accepted):
        check = make_check(shop, config={"url": f"http://mixed.example.test:{port}/"})
        _resolve_as(monkeypatch, "mixed.example.test", "127.0.0.1", "169.254.169.254")
        checks_run([check.pk])
    check.refresh_from_db()
    assert check.last_message == (
        "mixed.example.test resolves to 169.254.169.254, a link-local / cloud metadata address: refused"
    )
    assert not accepted


def test_localhost_is_refused_when_connecting_once_private_targets_are_disallowed(db, shop, settings):
    """Saved while loopback was allowed; the setting is turned off: the probes stop reaching it."""
    with listener() as (port, accepted):
        http = make_check(shop, "web", config={"url": f"http://localhost:{port}/health"})
        tcp = make_check(shop, "port", kind="tcp", config={"host": "localhost", "port": port})
        settings.ALLOW_PRIVATE_TARGETS = False
        checks_run([http.pk, tcp.pk])
    for check in (http, tcp):
        check.refresh_from_db()
        assert check.last_message.startswith("localhost resolves to 127.0.0.1, a loopback address: refused"), (
            check.last_message
        )
    assert not accepted


def test_redirects_are_not_followed_to_a_refused_address(db, shop):
    with redirecting_to("http://169.254.169.254/latest/meta-data/") as url:
        check = make_check(shop, config={"url": url, "expected_status": 200})
        checks_run([check.pk])
    check.refresh_from_db()
    assert check.last_message == "HTTP 302 (expected 200)"


def test_tls_is_verified_against_the_name_in_the_url(tmp_path: Path):
    """The guard connects to the address it checked, but TLS still checks the certificate against the URL's
    host name (SNI and verification are httpcore's own), so a valid certificate for the name passes and a
    certificate for another name does not."""
    good = make_certificate(tmp_path / "good", "localhost")
    other = make_certificate(tmp_path / "other", "other.example.test")
    for certificate, ok in ((good, True), (other, False)):
        with serve_tls(certificate) as port:
            context = ssl.create_default_context(cafile=str(certificate[0]))
            with netguard.http_client(allow_private=True, timeout=5, verify=context) as client:
                if ok:
                    assert client.get(f"https://localhost:{port}/").status_code == 200
                else:
                    with pytest.raises(httpx.ConnectError, match=r"Hostname mismatch|doesn't match"):
                        client.get(f"https://localhost:{port}/")
    with serve_tls(good) as port:
        context = ssl.create_default_context(cafile=str(good[0]))
        with netguard.http_client(allow_private=False, timeout=5, verify=context) as client:
            with pytest.raises(httpx.ConnectError, match=r"localhost resolves to 127\.0\.0\.1, a loopback address"):
                client.get(f"https://localhost:{port}/")


@pytest.mark.parametrize(
    ("address", "always"),
    [
        ("169.254.169.254", True),
        ("169.254.1.1", True),
        ("fe80::1", True),
        ("fd00:ec2::254", True),
        ("100.100.100.200", True),
        ("192.0.0.192", True),
        ("168.63.129.16", True),
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 of 169.254.169.254
        ("2002:a9fe:a9fe::1", True),  # 6to4 of 169.254.169.254
        ("224.0.0.1", True),
        ("255.255.255.255", True),
        ("240.0.0.1", True),
        ("0.0.0.0", True),  # noqa: S104 - an address to refuse, not one to bind
        ("::", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("fc00::1", False),
    ],
)
def test_which_addresses_are_refused(address, always):
    found = netguard.address_kind(ipaddress.ip_address(address))
    assert found is not None and found[1] is always
    assert (netguard.address_refusal(ipaddress.ip_address(address), allow_private=True) is not None) is always
    assert netguard.address_refusal(ipaddress.ip_address(address), allow_private=False) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "93.184.216.34"])
def test_public_addresses_pass(address):
    assert netguard.address_kind(ipaddress.ip_address(address)) is None


# --- helpers ---------------------------------------------------------------------------------------


def _alert_for(service: Service) -> AlertDelivery:
    """A down transition of `service` and its delivery on the one channel, attempted once (as the task would)."""
    from hadr_portal.adapters.notifiers import DeliveryFailed
    from hadr_portal.status.alerts import alert_deliver

    transition = Transition.objects.create(service=service, from_state="up", to_state="down", reason="test")
    delivery = AlertDelivery.objects.create(transition=transition, channel=AlertChannel.objects.get())
    with pytest.raises(DeliveryFailed):
        alert_deliver(delivery_id=delivery.pk)
    return delivery


def _resolve_as(monkeypatch, name: str, *addresses: str) -> None:
    """Make `name` resolve to `addresses` for the guard (what a hostile DNS server would answer)."""
    real = netguard.getaddrinfo

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host != name:
            return real(host, port, *args, **kwargs)
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [(family[ipaddress.ip_address(a).version], socket.SOCK_STREAM, 6, "", (a, int(port))) for a in addresses]

    monkeypatch.setattr(netguard, "getaddrinfo", fake)


@contextmanager
def listener() -> Iterator[tuple[int, list[bool]]]:
    """A loopback port that notes every connection it accepts."""
    accepted: list[bool] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(True)
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(2)
        server.close()


@contextmanager
def redirecting_to(location: str) -> Iterator[str]:
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for the DNS name `name`; (certificate, key) PEM files."""
    directory.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@contextmanager
def serve_tls(certificate: tuple[Path, Path]) -> Iterator[int]:
    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
