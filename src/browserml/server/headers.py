"""Response headers every BrowserML response carries, as one small pure-ASGI middleware.

Multi-threaded WASM in TF.js and LiteRT.js needs ``crossOriginIsolated``, which needs the page to
send ``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy: require-corp``
and every sub-resource to carry ``Cross-Origin-Resource-Policy``. Adding them in one middleware
(rather than per endpoint) means no page can forget them. A handler that sets its own value wins:
blobs say ``cross-origin`` so pages on other origins can embed them. Pure ASGI (not
``BaseHTTPMiddleware``) keeps the blob fast path free of extra tasks and body buffering.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ISOLATION_HEADERS = (
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
)


class IsolationHeadersMiddleware:
    """Given any HTTP response, add each isolation header the handler did not set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in ISOLATION_HEADERS if pair[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
