"""The app's user-facing error."""

from __future__ import annotations

from ptm_core.errors import PTMError


class AppDataError(PTMError):
    """Something the user asked for cannot be done; the message says why and what to do."""
