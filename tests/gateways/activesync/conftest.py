"""The ActiveSync test server: ``haven serve`` on each engine with ActiveSync on, once per test
module.  A module sets ``EAS_SETTINGS`` (config overrides) and ``EAS_RELAY = True`` (the
smarthost sink as the relay) when it needs more."""

from __future__ import annotations

import pytest

from tests.conftest import ENGINES, HavenServer, require_engine


@pytest.fixture(scope="module", params=ENGINES)
def eas(request, tmp_path_factory):
    require_engine(request.param)
    settings = {"activesync.enabled": "yes", **getattr(request.module, "EAS_SETTINGS", {})}
    if getattr(request.module, "EAS_RELAY", False):
        settings["submission.relay"] = request.getfixturevalue("sink").address
    label = request.module.__name__.rpartition(".")[2]
    server = HavenServer(tmp_path_factory.mktemp(f"haven-{label}-{request.param}"), request.param, settings)
    server.start()
    yield server
    server.close()
