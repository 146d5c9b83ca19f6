"""What the canary analysis asks outside the cluster (`bot.releases.ports.Analyst`): Prometheus,
through `prometheus-api-client` (`PrometheusConnect.custom_query`, the maintained client of
Prometheus's HTTP API: it builds the request, checks the status and unpacks the answer; no PromQL HTTP
handling is written here), and webhook gates, over the process's one aiohttp session.

`prometheus-api-client` is synchronous (requests): each query runs in a worker thread, under the
interval's timeout, so a slow Prometheus never blocks the event loop. One client per address.

The webhook contract (docs/analysis.md): the bot POSTs a JSON object (`steps.gate_payload`) and goes on
only on HTTP 2xx with a JSON object whose `ok` is true; `{"ok": false, "reason": "..."}` is a no with
its reason, and anything else (no answer within the gate's timeout, another status, another body) is a
no too: the gates fail closed.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import aiohttp
import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

SAID_MAX = 300  # what a gate said, as far as the card repeats it


class Analyst:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._clients: dict[str, PrometheusConnect] = {}

    def _client(self, address: str) -> PrometheusConnect:
        client = self._clients.get(address)
        if client is None:
            # No retries of its own: the next interval is the retry, and a refused connection says so at once.
            client = self._clients[address] = PrometheusConnect(
                url=address, disable_ssl=False, retry=Retry(total=0)
            )
        return client

    async def query(self, address: str, promql: str, timeout: float) -> tuple[list[float], str]:
        client = self._client(address)
        try:
            async with asyncio.timeout(timeout + 1):
                result = await asyncio.to_thread(
                    client.custom_query, promql, timeout=max(1, math.ceil(timeout))
                )
        except (TimeoutError, requests.Timeout):
            return [], f"Prometheus at {address} did not answer within {timeout:g} s"
        except requests.ConnectionError:
            return [], f"Prometheus at {address} is unreachable"
        except PrometheusApiClientException as e:
            return [], f"Prometheus at {address} refused the query ({_short(str(e))})"
        except requests.RequestException as e:
            return [], f"Prometheus at {address} failed ({type(e).__name__})"
        values = []
        for series in result if isinstance(result, list) else []:
            try:
                values.append(float(series["value"][1]))
            except (KeyError, IndexError, TypeError, ValueError):
                continue
        return values, ""

    async def ask(self, url: str, payload: dict[str, Any], timeout: float) -> tuple[bool, str]:
        try:
            async with (
                asyncio.timeout(timeout),
                self.session.post(url, json=payload, headers={"User-Agent": "release-bot"}) as resp,
            ):
                text = await resp.text()
                status = resp.status
        except TimeoutError:
            return False, f"no answer within {timeout:g} s"
        except aiohttp.ClientError as e:
            return False, f"unreachable ({type(e).__name__})"
        if not 200 <= status <= 299:
            return False, f"HTTP {status}"
        try:
            body = json.loads(text)
        except ValueError:
            return False, "answered without JSON"
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            return False, 'answered without a boolean "ok"'
        reason = body.get("reason")
        said = _short(reason) if isinstance(reason, str) else ""
        return body["ok"], said


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SAID_MAX else text[: SAID_MAX - 1] + "…"
