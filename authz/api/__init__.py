"""The keys REST API under ``/api/v1/auth``: FastAPI over key management (``authz.management``).

``create_app(settings)`` (``authz.api.app``) builds the application; ``python -m authz.api`` serves
it with uvicorn on ``HOKUSAI_API_HOST:HOKUSAI_API_PORT``. Callers authenticate with their own API
key, validated by the same pipeline as the Check server (built by ``authz.server``).
"""
