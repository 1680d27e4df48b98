"""The relay is woken through the store's ``on_outbound`` hook: with a queue interval of an
hour, a submitted message (remote alone, and remote beside a local copy, whose queue entry the
store holds until the local copy is in) still reaches the smarthost within seconds."""

from __future__ import annotations

import time

import pytest

from tests.conftest import HavenServer
from tests.gateways.submission.wire import message, submit, wait_for_mail


@pytest.fixture(scope="module")
def slow_poll(haven, sink, tmp_path_factory):
    server = HavenServer(tmp_path_factory.mktemp(f"haven-wake-{haven.engine}"), haven.engine, {
        "submission.relay": sink.address,
        "submission.queue_interval": "1h",
    })
    server.start()
    yield server
    server.close()


def test_a_submission_wakes_the_relay(slow_poll, sink):
    user, password = slow_poll.new_user("waker")
    local, local_pw = slow_poll.new_user("beside")
    alone, beside = f"alone-{time.monotonic_ns()}@remote.example", f"beside-{time.monotonic_ns()}@remote.example"
    started = time.monotonic()
    assert submit(slow_poll, user, password, user, [alone], message("alone", user, alone)) == {}
    assert len(sink.wait_for(alone)) == 1
    assert submit(slow_poll, user, password, user, [beside, local], message("beside", user, beside)) == {}
    assert len(sink.wait_for(beside)) == 1 and len(wait_for_mail(slow_poll, local, local_pw)) == 1
    assert time.monotonic() - started < 10

