"""Small builders shared by the Sieve extension tests."""
from formats.sieve import FileInto, Message, compile_script, run


def msg(headers="", body="body\r\n", env_from="sender@example.org",
        env_to="me@example.com", user_addresses=(), size=None):
    raw = (headers.replace("\n", "\r\n") + "\r\n" + body).encode("utf-8")
    return Message(raw=raw, envelope_from=env_from, envelope_to=env_to, size=size,
                   user_addresses=user_addresses)


def result(script, message):
    res = run(compile_script(script), message)
    assert res.error is None, res.error
    return res


def actions(script, message):
    return result(script, message).actions


def filed(script, message):
    """The mailboxes the script files into, in order."""
    return [a.mailbox for a in actions(script, message) if isinstance(a, FileInto)]
