"""[submission] max_messages_per_hour and max_recipients_per_hour over the wire, with smtplib,
on every engine: 451 4.7.1 at RCPT once the account (aliases included) reached its limit, at
DATA when two sessions raced past it; the session goes on; a log line names the account."""

from __future__ import annotations

import pytest

from tests.gateways.smtp_helpers import imap_messages
from .wire import connect, message, submit


@pytest.fixture
def server(engine, haven_factory):
    return haven_factory(engine, **{"submission.max_messages_per_hour": "2",
                                    "submission.max_recipients_per_hour": "3"})


def test_rate_limits_on_the_wire(server):
    user, password = server.new_user("rate")
    rcpt, rpw = server.new_user("rcpt")
    alias = "alias-" + user
    assert server.cli("alias", "add", alias, user).returncode == 0

    assert submit(server, user, password, user, [rcpt], message("one", user, rcpt)) == {}
    assert submit(server, user, password, alias, [rcpt], message("two", alias, rcpt)) == {}
    for mail_from in (user, alias):  # the alias shares the account's counter
        with connect(server) as s:
            s.login(user, password)
            assert s.mail(mail_from)[0] == 250
            code, text = s.rcpt(rcpt)
            assert (code, text[:6]) == (451, b"4.7.1 "), text
            assert s.rset()[0] == 250 and s.noop()[0] == 250  # the session goes on
    assert len(imap_messages(server, rcpt, rpw)) == 2
    assert "reached its submission limit: 2 messages" in server.log()
    assert "rate limit: RCPT" in server.log()


def test_parallel_sessions_are_stopped_at_data(server):
    user, password = server.new_user("race")
    a, apw = server.new_user("a")
    b, _ = server.new_user("b")
    with connect(server) as first, connect(server) as second:
        for s in (first, second):
            s.login(user, password)
            assert s.mail(user)[0] == 250
            assert s.rcpt(a)[0] == 250 and s.rcpt(b)[0] == 250  # each saw 0 sent at MAIL
        assert first.data(message("first", user, a))[0] == 250
        code, text = second.data(message("second", user, a))  # 4 recipients of 3
        assert (code, text[:6]) == (451, b"4.7.1 "), text
        assert second.noop()[0] == 250
        # the third recipient of the hour still goes
        assert second.sendmail(user, [a], message("third", user, a)) == {}
        assert second.mail(user)[0] == 250
        code, text = second.rcpt(b)
        assert (code, text[:6]) == (451, b"4.7.1 "), text
    subjects = [m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in imap_messages(server, a, apw)]
    assert subjects == [b"first", b"third"]
