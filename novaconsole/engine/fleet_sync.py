"""Keeping in step with the database and the fleet: controls saved elsewhere, lease renewal,
heartbeats, fleet commands and releasing claims at stop."""

from __future__ import annotations

import logging

import anyio

from novaconsole.engine.core import EngineCore, describe, log_extra
from novaconsole.engine.fleet_protocol import Claim, Command, WorkerBeat
from novaconsole.engine.outcomes import shown_id
from novaconsole.engine.repeated import RepeatedFailure

log = logging.getLogger("novaconsole.engine")


class FleetSync:
    """The coordination loop; with a coordinator it also speaks the fleet protocol."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core

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
                failures.succeeded()

    async def _coordinate(self, lease: float) -> None:
        core = self.core
        if not core.stopping:
            core.controls.follow(await core.store.load_controls())
        coordinator = core.coordinator
        if coordinator is None:
            return
        held = [
            Claim(rt.name, job.key, job.token)
            for rt in core.runtimes.values()
            for job in rt.active.values()
            if job.token is not None and not job.lost
        ]
        if held:
            for claim in await coordinator.renew(core.worker_id, held, lease):
                self._lease_lost(claim)
        beat = WorkerBeat(
            worker_id=core.worker_id,
            state=core.state,
            in_flight=core.in_flight,
            processed=sum(core.totals.values()),
            started_at=core.started_at,
        )
        core.fleet = tuple(await coordinator.beat(beat, lease))
        if core.stopping:
            return
        for command in await coordinator.take_commands(core.worker_id):
            self._carry_out(command)

    def _lease_lost(self, claim: Claim) -> None:
        runtime = self.core.runtimes.get(claim.handler)
        job = runtime.active.get(claim.item_id) if runtime else None
        if job is None or job.token != claim.token:
            return
        job.lost = True
        log.warning(
            "%s item %s: lease lost to another worker; its result will not be recorded",
            claim.handler,
            shown_id(job.item_id),
            extra=log_extra(claim.handler, job.item_id),
        )

    def _carry_out(self, command: Command) -> None:
        core = self.core
        assert core.task_group is not None
        if command.kind == "run_once":
            log.info("running one cycle for the fleet (command %d)", command.id)
            core.task_group.start_soon(self._run_once_quietly)
        else:
            log.warning("ignoring unknown fleet command %r", command.kind)

    async def _run_once_quietly(self) -> None:
        core = self.core
        if core.is_running and not core.stopping:
            await core.poller.run_once()

    async def release_unfinished(self) -> None:
        core = self.core
        claims, core.unfinished = core.unfinished, []
        if core.coordinator is not None and claims:
            try:
                await core.coordinator.release(core.worker_id, claims)
            except Exception:
                log.exception("releasing %d unfinished claims failed", len(claims))
