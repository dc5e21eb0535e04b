"""Typed errors. Every user mistake raises a WsiSatError child; the CLI maps them to exit code 2.

Each message is one line and says what to do.
"""

from __future__ import annotations


class WsiSatError(Exception):
    """Base class of every error caused by input, configuration or environment (exit code 2)."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ConfigError(WsiSatError):
    """Unknown config key, wrong type or value out of range."""


class InputImageError(WsiSatError):
    """A target or reference image is missing, unreadable, or not an image."""


class ReferenceError(WsiSatError):  # noqa: A001 - deliberate domain name
    """The reference image or its mask is unusable (missing, empty, full, wrong size)."""


class WeightsError(WsiSatError):
    """Model weights are missing or do not match their checksum."""


class ModelError(WsiSatError):
    """An unknown model name or an incompatible model combination."""


class DeviceError(WsiSatError):
    """The requested compute device is not available."""


class SlideReadError(WsiSatError):
    """A slide cannot be opened or read."""


class MissingMppError(WsiSatError):
    """The slide has no pixel size (µm/px) in its metadata and none was given."""


class OutputError(WsiSatError):
    """The output location cannot be written."""


class RunStateError(WsiSatError):
    """Outputs in --out belong to another run (other inputs) or are being written right now."""
