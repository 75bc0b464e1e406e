"""How authz behaves when a dependency is slow or down, written once: the circuit breaker
(``breaker.py``) every Postgres and Redis client uses, and the single flight (``singleflight.py``)
that makes concurrent identical work run once."""
