"""Keeping in step with the database and the fleet: controls saved elsewhere, lease renewal,
heartbeats, fleet commands, operators' retry requests and releasing claims at stop.

A worker that does not share work (the default on SQLite) still beats and takes commands and
retry requests through its store's control plane, so that a CLI command in another terminal
reaches it within a second."""

from __future__ import annotations

import logging

import anyio

from novaconsole.engine.core import EngineCore, describe, log_extra
from novaconsole.engine.fleet_protocol import Claim, Command, WorkerBeat
from novaconsole.engine.operator import RetryStatus
from novaconsole.engine.outcomes import shown_id
from novaconsole.engine.repeated import RepeatedFailure

log = logging.getLogger("novaconsole.engine")


class FleetSync:
    """The coordination loop; with a coordinator it also speaks the fleet protocol."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self._refused: set[str] = set()
        self.leases_lost: dict[str, int] = {}
        """Items whose claim another worker took while this one held it, by handler."""

    async def run(self) -> None:
        """Follow controls changed elsewhere; with a coordinator also renew leases, heartbeat
        and take fleet commands. Runs until the service is torn down, drain included."""
        options = self.core.options
        lease = options.lease_duration.total_seconds()
        interval = min(1.0, max(lease / 3, 0.05), max(options.poll_interval.total_seconds(), 0.05))
        failures = RepeatedFailure(log, "coordination with the database failed; trying again")
        while True:
            await anyio.sleep(interval)
            try:
                await self._coordinate(lease)
            except Exception as error:
                failures.failed(describe(error), error)
            else:
                if failures.failing:
                    self.core.breakers.database_back()
                failures.succeeded()

    async def _coordinate(self, lease: float) -> None:
        core = self.core
        if not core.stopping:
            core.controls.follow(await core.store.load_controls())
            await core.breakers.sync()
        coordinator = core.coordinator
        plane = getattr(core.store, "control_plane", None)
        if coordinator is not None and coordinator.renewal_due():
            # Not built at every tick: a claim for every active item, every 50 ms with a
            # short poll interval, was a third of the coordination loop's time in B7's drain.
            held = [
                Claim(rt.name, job.key, job.token)
                for rt in core.runtimes.values()
                for job in rt.active.values()
                if job.token is not None and not job.lost
            ]
            if held:
                for claim in await coordinator.renew(core.worker_id, held, lease):
                    self._lease_lost(claim)
        beating = coordinator or plane
        if beating is None:
            return
        beat = WorkerBeat(
            worker_id=core.worker_id,
            state=core.state,
            in_flight=core.in_flight,
            processed=sum(core.totals.values()),
            started_at=core.started_at,
        )
        fleet = tuple(await beating.beat(beat, lease))
        # A worker alone (no coordinator) beats so that operators' commands know it is up;
        # its snapshot lists no fleet.
        core.fleet = fleet if coordinator is not None else ()
        if core.stopping:
            return
        for command in await beating.take_commands(core.worker_id):
            self._carry_out(command)
        if plane is not None and core.is_running:
            for request in await plane.take_retries(core.worker_id, list(core.runtimes)):
                assert core.task_group is not None
                core.task_group.start_soon(self._retry, request)

    async def _retry(self, request: RetryStatus) -> None:
        try:
            await self.core.retries.request(request.handler, request.item_id, taken=request)
        except Exception:
            log.exception(
                "retry request %s (%s item %s) failed",
                request.id,
                request.handler,
                request.item_id,
                extra=log_extra(request.handler, request.item_id),
            )

    def _lease_lost(self, claim: Claim) -> None:
        runtime = self.core.runtimes.get(claim.handler)
        job = runtime.active.get(claim.item_id) if runtime else None
        if job is None or job.token != claim.token:
            return
        job.lost = True
        self.leases_lost[claim.handler] = self.leases_lost.get(claim.handler, 0) + 1
        log.warning(
            "%s item %s: lease lost to another worker; its result will not be recorded",
            claim.handler,
            shown_id(job.item_id),
            extra=log_extra(claim.handler, job.item_id),
        )

    def _carry_out(self, command: Command) -> None:
        core = self.core
        assert core.task_group is not None
        if command.kind != "run_once":
            self._refuse(f"ignoring fleet command {command.id}: unknown kind {command.kind!r}")
            return
        handler = command.args.get("handler")
        unknown = set(command.args) - {"handler"}
        if unknown or (handler is not None and handler not in core.runtimes):
            self._refuse(
                f"ignoring fleet command {command.id} (run_once): bad arguments "
                f"{dict(command.args)!r}"
            )
            return
        target = f" of {handler}" if handler else ""
        log.info("running one cycle%s for the fleet (command %d)", target, command.id)
        core.task_group.start_soon(self._run_once_quietly, handler)

    def _refuse(self, message: str) -> None:
        if message not in self._refused:
            self._refused.add(message)
            log.warning("%s", message)

    async def _run_once_quietly(self, handler: str | None = None) -> None:
        core = self.core
        if core.is_running and not core.stopping:
            await core.poller.run_once(handler)

    async def release_unfinished(self) -> None:
        core = self.core
        claims, core.unfinished = core.unfinished, []
        if core.coordinator is not None and claims:
            try:
                await core.coordinator.release(core.worker_id, claims)
            except Exception:
                log.exception("releasing %d unfinished claims failed", len(claims))
