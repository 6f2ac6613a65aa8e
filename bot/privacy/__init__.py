"""Privacy: per-channel retention, erasure and export of what Relais holds about a person."""
