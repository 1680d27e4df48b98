"""What the PIM item conversions (contacts, calendar) share."""

from __future__ import annotations


class ConversionError(ValueError):
    """ApplicationData or stored text that cannot be converted (item Status 6 / skipped)."""
