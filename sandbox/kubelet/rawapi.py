"""Plain-JSON requests over a kubernetes_asyncio ApiClient, for the simulated kubelet.

The kubelet works on raw JSON (merge patches, pods/binding, watch lines) rather than the generated
models: it is faster, exact about what is sent, and spares a model round trip for every pod event.
The ApiClient still owns authentication, TLS and the connection pool.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

JsonDict = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class RawApi:
    """``request``/``open`` against the cluster ``api`` points at; non-2xx answers raise ApiException.

    ``timeout`` (seconds, None for none) bounds each request, body included; ``open`` takes its own.
    """

    def __init__(self, api: client.ApiClient, *, timeout: float | None = None) -> None:
        self._api = api
        self._timeout = timeout

    async def open(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> aiohttp.ClientResponse:
        """Start a request and return the open response (the caller releases it)."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (query or {}).items()]
        resp: aiohttp.ClientResponse = await self._api.call_api(
            path,
            method,
            query_params=params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout if timeout is not None else self._timeout,
        )
        if not 200 <= resp.status <= 299:
            try:
                text = (await resp.read()).decode("utf-8", "replace")
            finally:
                resp.release()
            reason = text
            with contextlib.suppress(ValueError):
                reason = json.loads(text).get("message", text)
            raise ApiException(status=resp.status, reason=reason)
        return resp

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JsonDict:
        """Make a request and return its JSON answer."""
        resp = await self.open(method, path, query=query, body=body, content_type=content_type)
        try:
            data = await resp.read()
        finally:
            resp.release()
        result: JsonDict = json.loads(data) if data else {}
        return result
