"""Exchange ActiveSync (EAS 14.0 to 16.1) for phones: iOS Mail, Android mail apps, Outlook
mobile, on the shared store.

- ``endpoint.py``: ``/Microsoft-Server-ActiveSync`` on the front door (MS-ASHTTP): methods,
  OPTIONS, the headers of every answer, login names.

The front door (gateways/http) mounts it behind its login when ``[activesync] enabled``;
like every protocol package it knows no other gateway and no front door.
"""

from __future__ import annotations

from .endpoint import PREFIX, ActiveSyncEndpoint, make_endpoint

__all__ = ["PREFIX", "ActiveSyncEndpoint", "make_endpoint"]
