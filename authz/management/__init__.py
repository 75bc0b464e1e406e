"""Key management for the CLI and the REST API: operations, validation, expiry policy and the
delegation rules. Front ends parse their own syntax and call into here; nothing is decided twice.
"""
