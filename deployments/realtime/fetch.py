"""Fetching ``ref_audio_url`` safely: size and time limits, and no requests to loopback,
private, link-local or otherwise non-public addresses unless configured (SSRF protection)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx


async def _check_host(host: str) -> None:
    infos = await asyncio.to_thread(socket.getaddrinfo, host, None)
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise ValueError(f"ref_audio_url host {host!r} resolves to a non-public address ({ip})")


async def fetch_reference(url: str, max_bytes: int, timeout_s: float, allow_private: bool = False) -> bytes:
    """Download ``url`` (http/https, no redirects followed) into memory.

    Raises:
        ValueError: bad scheme, non-public host (unless ``allow_private``), a redirect, an HTTP
            error, a body over ``max_bytes``, or a download slower than ``timeout_s`` seconds.
    """
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("ref_audio_url must be an http(s) URL")
    if not allow_private:
        await _check_host(parts.hostname)
    try:
        async with asyncio.timeout(timeout_s):
            async with httpx.AsyncClient(follow_redirects=False, timeout=timeout_s) as client:
                async with client.stream("GET", url) as r:
                    if r.status_code != 200:
                        raise ValueError(f"ref_audio_url answered HTTP {r.status_code}")
                    length = r.headers.get("content-length")
                    if length and length.isdigit() and int(length) > max_bytes:
                        raise ValueError(f"ref_audio_url is larger than {max_bytes} bytes")
                    data = bytearray()
                    async for chunk in r.aiter_bytes():
                        data += chunk
                        if len(data) > max_bytes:
                            raise ValueError(f"ref_audio_url is larger than {max_bytes} bytes")
                    return bytes(data)
    except TimeoutError:
        raise ValueError(f"ref_audio_url took longer than {timeout_s} s") from None
    except httpx.HTTPError as exc:
        raise ValueError(f"ref_audio_url could not be fetched: {exc}") from None
