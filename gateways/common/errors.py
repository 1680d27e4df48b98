"""The error that stops start-up, importable by every gateway, the service and the CLI."""


class StartupError(Exception):
    """Start-up failed for a reason the admin can fix; the message says how.  Any gateway and
    the process raise it (a bad config value, a port that cannot be bound)."""
