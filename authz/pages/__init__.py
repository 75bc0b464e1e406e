"""The gateway's own pages, served by the keys API process: sign-in and sign-out (``routes.py``,
``signin.py``), the documentation rendered from ``docs/`` (``docs.py``: every denial's ``docs``
link resolves on the gateway), and the answers MLflow's UI asks about the signed-in user
(``account.py``). One Jinja2 template per page (autoescaped), our own CSS and one script file; no
third-party origin; every page has the same security headers (``render.py``).
"""
