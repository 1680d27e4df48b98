"""Lists of networks in the configuration (``[auth] trusted_networks``): parsed once, asked
per connection."""

from __future__ import annotations

import ipaddress


class Networks:
    """``"10.0.0.0/8, 192.0.2.7, 2001:db8::/32"`` -> a membership test for client addresses.
    An IPv4 address seen as IPv6 (``::ffff:192.0.2.7``) is tested as IPv4."""

    def __init__(self, text: str = ""):
        self.networks = []
        for item in (text or "").replace(",", " ").split():
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (like 192.0.2.0/24)") from None

    def __contains__(self, ip) -> bool:
        if not self.networks or not ip:
            return False
        try:
            address = ipaddress.ip_address(str(ip).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in net for net in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"Networks({', '.join(map(str, self.networks))!r})"
