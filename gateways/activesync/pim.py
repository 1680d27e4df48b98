class ConversionError(ValueError):
    """ApplicationData or stored text that cannot be converted (item Status 6 / skipped)."""
