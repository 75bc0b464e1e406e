"""Per-key rate limits: GCRA maths and the limiters that apply it (exact in Redis, approximate
in process)."""
