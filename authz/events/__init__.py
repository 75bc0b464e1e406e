"""Authentication events: who tried what (``recorder.py``) and the expiry warnings
(``webhook.py``)."""
