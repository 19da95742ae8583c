"""Time helpers shared by the packages above the memory."""

from __future__ import annotations

import pandas as pd


def utc_timestamp(value: object) -> pd.Timestamp:
    """``value`` (a datetime, Timestamp, ISO string or epoch-ns int) as a tz-aware UTC Timestamp;
    a naive time is taken to be UTC already."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
