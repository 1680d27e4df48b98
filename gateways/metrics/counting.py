"""Connections and logins counted where the service hands things to the gateways, so no
protocol class knows it is measured.

- :class:`CountingFactory` wraps a Twisted listener's factory, :func:`counting_asyncio`
  an asyncio protocol factory (aiosmtpd).  The protocol built is the gateway's own, with its
  connection-made and connection-lost methods wrapped on the instance: no proxy stands between
  transport and protocol (``twisted.protocols.policies.ProtocolWrapper`` would, hiding
  ``IHandshakeListener`` and the TLS transport's interfaces from the protocol behind it).  A
  connection counts once made (after the TCP accept; a TLS listener's asyncio protocol after
  the handshake), and stops being open when lost.
- :class:`CountingPortal` stands for the portal in one gateway's context and counts what the
  portal answered each login, by its result.
"""

from __future__ import annotations

from typing import Callable

from twisted.cred import error
from twisted.internet.interfaces import ILoggingContext, IProtocolFactory
from zope.interface import implementer

from auth.cred import LoginBlocked, LoginUnavailable


def _watch(proto, made: str, lost: str, opened: Callable[[], None], closed: Callable[[], None]):
    """Wrap ``proto``'s ``made``/``lost`` methods (on the instance) to call opened/closed."""
    on_made, on_lost = getattr(proto, made), getattr(proto, lost)
    is_open = []

    def connection_made(*args, **kwargs):
        if not is_open:
            is_open.append(True)
            opened()
        return on_made(*args, **kwargs)

    def connection_lost(*args, **kwargs):
        if is_open:
            is_open.clear()
            closed()
        return on_lost(*args, **kwargs)
    setattr(proto, made, connection_made)
    setattr(proto, lost, connection_lost)
    return proto


@implementer(IProtocolFactory, ILoggingContext)
class CountingFactory:
    """A Twisted factory that builds what ``factory`` builds, counted (everything else is
    ``factory``'s: start, stop, its attributes)."""

    def __init__(self, factory, opened: Callable[[], None], closed: Callable[[], None]):
        self.wrapped = factory
        self._opened, self._closed = opened, closed

    def buildProtocol(self, addr):
        proto = self.wrapped.buildProtocol(addr)
        if proto is not None:
            _watch(proto, "connectionMade", "connectionLost", self._opened, self._closed)
        return proto

    def doStart(self):
        return self.wrapped.doStart()

    def doStop(self):
        return self.wrapped.doStop()

    def logPrefix(self) -> str:
        prefix = getattr(self.wrapped, "logPrefix", None)
        return prefix() if prefix is not None else self.wrapped.__class__.__name__

    def __getattr__(self, name):
        return getattr(self.wrapped, name)


def counting_asyncio(factory: Callable, opened: Callable[[], None], closed: Callable[[], None]) -> Callable:
    """An asyncio protocol factory (``loop.create_server``) building ``factory()``, counted."""
    def build():
        return _watch(factory(), "connection_made", "connection_lost", opened, closed)
    return build


def login_result(failure) -> str:
    """The metric's name for a refused login (a Twisted Failure)."""
    if failure.check(LoginUnavailable):
        return "unavailable"
    if failure.check(LoginBlocked):
        return "blocked"
    if failure.check(error.UnauthorizedLogin, error.LoginFailed):
        return "failed"
    return "unavailable"  # anything else: the gateway cannot have let the user in either


class CountingPortal:
    """The portal as one gateway sees it: ``login`` counted by ``count(result)``."""

    def __init__(self, portal, count: Callable[[str], None]):
        self.wrapped = portal
        self._count = count

    def login(self, credentials, mind, *interfaces):
        d = self.wrapped.login(credentials, mind, *interfaces)
        d.addCallbacks(self._ok, self._refused)
        return d

    def _ok(self, result):
        self._count("ok")
        return result

    def _refused(self, failure):
        self._count(login_result(failure))
        return failure

    def __getattr__(self, name):
        return getattr(self.wrapped, name)
