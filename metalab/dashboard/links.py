"""Where the metalab page is: its path on the scheduler's dashboard and links to it."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PLUGIN_NAME = "metalab"
"""The name of the metalab plugin on the scheduler."""
PAGE = "/metalab"
"""The page's path below the dashboard's prefix: beside the dashboard's own `/status`."""


def page_link(dashboard_link: str) -> str:
    """The metalab page's URL, given the Dask dashboard's link (`client.dashboard_link`).

    The page lives beside the dashboard's `status` page, so `http://host:8787/status` gives
    `http://host:8787/metalab`, and a link with a path prefix (`.../proxy/8787/status`) keeps
    its prefix and its query (a proxy's token). A link that does not end in `status` gets
    `metalab` appended to its path; the page's own link is returned as it is.
    """
    parts = urlsplit(dashboard_link)
    path = parts.path.rstrip("/")
    if path.endswith(PAGE):
        return dashboard_link  # already the page
    if path.rsplit("/", 1)[-1] == "status":
        path = path.rsplit("/", 1)[0]
    return urlunsplit(parts._replace(path=path + PAGE, fragment=""))


def dashboard_link(client: Any) -> str | None:
    """The Dask dashboard's link of `client`, with a host its dashboard listens on.

    Starts from `client.dashboard_link`, so a configured `distributed.dashboard.link` (a
    proxy, a prefix) is kept. An in-process cluster's link names the machine's network
    address while its dashboard may listen on a loopback address only: the link then names
    that loopback address. Returns None when there is no dashboard; never raises.
    """
    try:
        link = client.dashboard_link
    except Exception:  # noqa: BLE001 - a cluster without a dashboard is fine
        return None
    if not link:
        return None
    try:
        bound = client.run_on_scheduler(_dashboard_address)
    except Exception:  # noqa: BLE001 - the link as distributed formats it
        return str(link)
    return _reachable(str(link), bound)


def _dashboard_address(dask_scheduler: Any = None) -> tuple[str, int] | None:
    server = getattr(dask_scheduler, "http_server", None)
    address, port = getattr(server, "address", None), getattr(server, "port", None)
    return None if address is None or port is None else (str(address), int(port))


def _reachable(link: str, bound: tuple[str, int] | None) -> str:
    """`link` with the dashboard's loopback address when its host cannot reach that address."""
    if bound is None:
        return link
    address, port = bound
    parts = urlsplit(link)
    try:
        loopback = ipaddress.ip_address(address).is_loopback
        link_loopback = parts.hostname == "localhost" or (
            parts.hostname is not None and ipaddress.ip_address(parts.hostname).is_loopback
        )
    except ValueError:  # a host name in the link: it is the user's to choose
        return link
    if not loopback or link_loopback or parts.port != port:
        return link
    host = f"[{address}]" if ":" in address else address
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))
