"""Listing sweeps on a scheduler's metalab page, from the driver: the `SweepDashboard`."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..run_ids import RunIds
from . import limits
from ._plugin import MetalabPlugin
from ._sample import pack
from ._view import SweepEntry
from .links import PLUGIN_NAME, dashboard_link, page_link

if TYPE_CHECKING:
    from ..sweep import Sweep

logger = logging.getLogger("metalab.dashboard")


def dashboard_available() -> bool:
    """Whether bokeh is importable here, so the page can exist at all."""
    return importlib.util.find_spec("bokeh") is not None


def register_sweep(
    client: Any,
    *,
    experiment_id: str,
    store_locator: str,
    total: int,
    session: str,
    run_ids: Sequence[str] | None = None,
    experiment_key: str | None = None,
) -> bool:
    """Announce a starting sweep to the scheduler's metalab page; return whether it is listed.

    Installs `MetalabPlugin` on the scheduler when it is absent (idempotent). `run_ids` (the
    sweep's run ids, or some of them: sent packed, 16 bytes a run, for sweeps of up to
    `limits.MAX_RUN_IDS` runs) lets the page count exactly these runs, leaving out records
    of `experiment_id` that are not the sweep's; without them the page counts the store's
    records of `experiment_id`. Registering a session again replaces its entry. Never
    raises: a dashboard problem must not stop a sweep, so failures are logged and return
    False; without bokeh this does nothing.
    """
    if not dashboard_available():
        logger.debug("bokeh is not installed (extra 'dashboard'): no metalab dashboard page")
        return False
    if not isinstance(store_locator, str):
        logger.debug("sweep %s has no store locator: not shown on the dashboard", session)
        return False
    entry = SweepEntry(
        experiment_id=experiment_id,
        store_locator=store_locator,
        total=int(total),
        session=session,
        run_ids=packed_ids(run_ids),
        experiment_key=experiment_key,
    )
    try:
        client.register_plugin(MetalabPlugin())
        client.run_on_scheduler(_register_on_scheduler, entry)
    except Exception as exc:  # noqa: BLE001 - the sweep goes on without its page
        logger.info("could not list sweep %s on the Dask dashboard: %s", session, exc)
        return False
    return True


def packed_ids(run_ids: Sequence[str] | None) -> bytes | None:
    """The sweep's run ids as the entry carries them: 16 bytes each (a driver's `RunIds`
    already are), or None for none or more than `limits.MAX_RUN_IDS`."""
    if run_ids is None or len(run_ids) > limits.MAX_RUN_IDS:
        return None
    if isinstance(run_ids, RunIds):
        return run_ids.raw
    return pack(run_ids)


def unregister_sweep(client: Any, session: str) -> None:
    """Mark the sweep `session` finished on the metalab page (it stays listed a while).

    Idempotent; never raises (failures are logged)."""
    if not dashboard_available():
        return
    try:
        client.run_on_scheduler(_unregister_on_scheduler, session)
    except Exception as exc:  # noqa: BLE001 - the sweep is over either way
        logger.debug("could not mark sweep %s finished on the dashboard: %s", session, exc)


def registered_sweeps(client: Any) -> list[dict[str, Any]]:
    """The scheduler's registry: one dict per sweep, newest first ([] without the plugin)."""
    return client.run_on_scheduler(_describe_on_scheduler)


def _register_on_scheduler(entry: SweepEntry, dask_scheduler: Any = None) -> None:
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    if plugin is None:
        raise RuntimeError("the metalab scheduler plugin is not installed")
    plugin.register(entry)


def _unregister_on_scheduler(session: str, dask_scheduler: Any = None) -> None:
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    if plugin is not None:
        plugin.unregister(session)


def _describe_on_scheduler(dask_scheduler: Any = None) -> list[dict[str, Any]]:
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    return [] if plugin is None else plugin.describe()


class DaskDashboard:
    """The metalab page of a Dask scheduler's dashboard, as a `metalab.contracts.SweepDashboard`."""

    def link(self, client: Any) -> str | None:
        """Return the Dask dashboard's link of `client` (see `dashboard_link`), or None when
        it has none. Never raises."""
        return dashboard_link(client)

    def page_link(self, link: str) -> str:
        """Return the metalab page's URL, given the dashboard's `link` (see `page_link`)."""
        return page_link(link)

    def register(self, client: Any, sweep: Sweep) -> bool:
        """List `sweep` on the scheduler's page; return whether it is listed. Idempotent;
        never raises (see `register_sweep`)."""
        return register_sweep(
            client,
            experiment_id=sweep.experiment.experiment_id,
            store_locator=sweep.ref.store,
            total=sweep.total,
            session=sweep.ref.session,
            run_ids=sweep.run_ids,
            experiment_key=sweep.ref.experiment_key,
        )

    def unregister(self, client: Any, session: str) -> None:
        """Mark sweep `session` finished on the page; idempotent, never raises."""
        unregister_sweep(client, session)


DASHBOARD = DaskDashboard()
"""What `metalab.registry.dashboard()` hands to the Dask executors."""
