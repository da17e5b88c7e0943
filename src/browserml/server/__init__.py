"""The HTTP server (ASGI, Starlette under uvicorn). It holds no storage logic: see
:mod:`browserml.registry`. ``docs/http-api.md`` is the contract it implements."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
