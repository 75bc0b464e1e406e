"""The browser session as a value: the cookie (``cookie.py``), the record the check path reads
(``record.py``) and the rules a browser request is judged by — same origin, navigation, where to
send a person to sign in and back (``browser.py``). Pure: nothing here does I/O.

A session is one more credential source of the Check (``authz/check/``): an opaque id in a
``__Host-`` cookie, stored server-side as its SHA-256 only (``authz/storage/sessions.py``), bound
to the key that created it (kind ``key``) — or, next, to an OpenID Connect sign-in (kind
``oidc``, with the scopes that sign-in mapped to).
"""
