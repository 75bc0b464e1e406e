"""The benchmark harness: Envoy alone, Envoy's native api_key_auth, the Python ext_authz floors,
this gateway's authz (gRPC and HTTP), denials, and MLflow end to end — interleaved, in one run.

``python -m bench`` (``make bench``); ``python -m bench --smoke`` proves it runs end to end.
"""
