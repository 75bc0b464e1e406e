"""How the Check and Envoy's other services reach authz: gRPC (``grpc.py``, ``envoy.py``), raw
HTTP (``http.py``), the encoded responses both share (``responses.py``), Envoy's RateLimitService
and AccessLogService, and the names Envoy's and NGINX's configuration share with authz
(``wire.py``). Protobuf types stop in this folder.
"""
