"""Usage: per-minute rollups built from Envoy's access log, and the reports read from them."""
