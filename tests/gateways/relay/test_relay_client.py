"""The spooler's SMTP client against a real SMTP server (the aiosmtpd test sink) on loopback:
per-recipient results, the exact bytes, STARTTLS, implicit TLS, AUTH, certificate checks and
the session-level failures that make every recipient wait for a retry."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from gateways.service import make_self_signed
from gateways.common.relayconf import RelaySettings
from gateways.relay.client import RelayError, SMTPClient
from tests.gateways.submission.sink import SMTPSink, free_port


def run(coro):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 30))
    finally:
        loop.close()


async def send(relay: RelaySettings, mail_from, recipients, message, count: int = 1):
    client = SMTPClient(relay, "haven.test")
    await client.connect()
    try:
        return [await client.send(mail_from, recipients, message) for _ in range(count)], client.tls
    finally:
        await client.quit()


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("sink-tls")
    make_self_signed("sink.test", d / "cert.pem", d / "key.pem")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(d / "cert.pem", d / "key.pem")
    return context


def test_per_recipient_results_and_exact_bytes():
    sink = SMTPSink().start()
    try:
        sink.replies["bad@remote.example"] = "550 5.1.1 no such user"
        sink.replies["later@remote.example"] = "451 4.7.1 greylisted"
        message = b"Subject: x\r\n\r\n.leading dot\r\n..two\r\nbare\nlf\r\n\xc3\xa9\r\n"
        [results], tls = run(send(RelaySettings("127.0.0.1", sink.port, tls="starttls"), "a@example.test",
                                  ["ok@remote.example", "bad@remote.example", "later@remote.example"], message, 1))
        assert not tls  # the sink offers no STARTTLS: plain, as relay_tls = starttls allows
        assert [results[r].code for r in ("ok@remote.example", "bad@remote.example", "later@remote.example")] \
            == [250, 550, 451]
        assert results["bad@remote.example"].status == "5.1.1" and str(results["later@remote.example"]) \
            == "451 4.7.1 greylisted"
        [got] = sink.received
        assert got.rcpt_tos == ["ok@remote.example"] and got.mail_from == "a@example.test"
        assert got.data == message.replace(b"bare\nlf", b"bare\r\nlf")
        assert "BODY=8BITMIME" in got.mail_options
        # several transactions on one connection; a data refusal applies to every accepted one
        sink.data_reply = "554 5.6.0 content rejected"
        [first, second], _ = run(send(RelaySettings("127.0.0.1", sink.port), "a@example.test",
                                      ["ok@remote.example"], b"Subject: y\r\n\r\n", 2))
        assert first["ok@remote.example"].code == second["ok@remote.example"].code == 554
    finally:
        sink.stop()


def test_starttls_and_auth(server_tls):
    sink = SMTPSink(tls_context=server_tls, credentials={"relayuser": "s3cret"}).start()
    try:
        relay = RelaySettings("127.0.0.1", sink.port, user="relayuser", password="s3cret", verify=False)
        [results], tls = run(send(relay, "a@example.test", ["x@remote.example"], b"Subject: tls\r\n\r\nhi\r\n"))
        assert tls and results["x@remote.example"].code == 250
        assert sink.received[0].tls and sink.received[0].login == "relayuser"
        # the certificate is self-signed: with verification on, no TLS and no password
        with pytest.raises(RelayError) as err:
            run(send(RelaySettings("127.0.0.1", sink.port, user="relayuser", password="s3cret", verify=True),
                     "a@example.test", ["x@remote.example"], b"x\r\n"))
        assert err.value.status == "4.7.5" and "certificate" in str(err.value).lower()
        with pytest.raises(RelayError) as err:
            run(send(RelaySettings("127.0.0.1", sink.port, user="relayuser", password="wrong", verify=False),
                     "a@example.test", ["x@remote.example"], b"x\r\n"))
        assert err.value.status == "4.7.0" and "refused relay_user relayuser" in str(err.value)
        assert len(sink.received) == 1
    finally:
        sink.stop()


def test_implicit_tls(server_tls):
    sink = SMTPSink()
    from aiosmtpd.controller import Controller
    from tests.gateways.submission.sink import _Handler
    controller = Controller(_Handler(sink), hostname="127.0.0.1", port=sink.port, ssl_context=server_tls)
    controller.start()
    try:
        [results], tls = run(send(RelaySettings("127.0.0.1", sink.port, tls="tls", verify=False), "a@example.test",
                                  ["x@remote.example"], b"Subject: 465\r\n\r\n"))
        assert tls and results["x@remote.example"].code == 250
    finally:
        controller.stop()


def test_connection_refused_and_timeout():
    with pytest.raises(RelayError) as err:
        run(send(RelaySettings("127.0.0.1", free_port()), "a@example.test", ["x@remote.example"], b"x\r\n"))
    assert err.value.status == "4.4.1" and str(err.value).startswith("connect to 127.0.0.1:")

    async def silent(reader, writer):  # accepts, never greets
        await asyncio.sleep(5)
        writer.close()

    async def go():
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await send(RelaySettings("127.0.0.1", port, timeout=0.3), "a@example.test", ["x@remote.example"], b"x")
        finally:
            server.close()
    with pytest.raises(RelayError, match="did not answer within 0.3s"):
        run(go())
