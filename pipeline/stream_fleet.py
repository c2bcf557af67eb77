"""The fleet stage in the worker: fed from ``compute.minutes``, saved to and restored from the
store.

The topic has one partition, so one worker of the group runs the fleet stage at a time; when
it goes, the next owner restores the last snapshot and reads on from the offset it covers.
Judging is deterministic in what it reads, so messages read again after a crash judge the same
minutes the same way: the alerts they raise again have the same ``alert_id`` and ClickHouse
keeps one (``alerts`` is a ReplacingMergeTree); the alerts topic and the webhook may see them
twice (each carries its ``alert_id``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from pipeline.budgets import budgets_from_settings
from pipeline.config import Settings
from pipeline.detectors import default_detectors
from pipeline.fleet import (
    FleetNorms,
    FleetStage,
    MinutePart,
    decode_fleet_input,
    decode_part,
    encode_part,
)
from pipeline.instruments import Instruments, NoInstruments, timed
from pipeline.records import Message, StepOutput
from pipeline.storage import Store
from pipeline.storage.budgets import read_budgets, seed_budgets

log = logging.getLogger(__name__)
PRUNE_EVERY_S: Final = 600.0  # event time between deletions of the parts judged since


@dataclass
class StoredFleet:
    """The worker's :class:`FleetStage` and the offset of ``compute.minutes`` it has read.

    The stage's snapshot leaves out the parts waiting for a partition's clock: each is saved
    once, apart, under :attr:`part_prefix` (by due point, so judged ones can be deleted by
    range), and given back to the restored stage.
    """

    settings: Settings
    store: Store
    stage: FleetStage | None = None
    offset: int = -1
    unsaved: list[MinutePart] = field(default_factory=list)
    pruned_s: float = -math.inf  # parts due before this were deleted from the store
    budgets_read: float = -math.inf  # monotonic time the budgets table was last read
    instruments: Instruments = field(default_factory=NoInstruments)

    @property
    def key(self) -> str:
        kafka = self.settings.kafka
        return f"{kafka.consumer_group}/{kafka.minutes_topic}/fleet"

    @property
    def part_prefix(self) -> str:
        return f"{self.key}#part/"

    def part_key(self, due_s: float, partition: int = 0, chunk: int = 0) -> str:
        return f"{self.part_prefix}{due_s:017.3f}/{partition:06d}/{chunk:06d}"

    def restore(self) -> FleetStage:
        """The fleet stage, restored on first use from its snapshot."""
        if self.stage is not None:
            return self.stage
        snapshot = self.store.load_snapshot(self.key)
        if snapshot is None:
            detectors = default_detectors(max_entities=self.settings.worker.max_entities)
            self.stage = FleetStage(self.settings, detectors, self.settings.kafka.partitions)
        else:
            self.offset, self.stage = snapshot[0], FleetStage.restore(snapshot[1], self.settings)
            saved = self.store.load_snapshots(self.part_prefix, max_offset=self.offset)
            self.stage.keep(decode_part(state) for _, state in saved)
            self.pruned_s = self.stage.judged_s
            log.info("fleet stage: state restored at offset %d", self.offset)
        seed_budgets(self.store.client, budgets_from_settings(self.settings))
        self.read_budgets()
        return self.stage

    def read_budgets(self) -> None:
        """Give the stage the budgets table as it is now (edits from the dashboard)."""
        assert self.stage is not None
        self.stage.budgets.set_budgets(read_budgets(self.store.client))
        self.budgets_read = time.monotonic()

    def step(self, messages: list[Message]) -> tuple[StepOutput, FleetNorms | None]:
        """Judge what the messages it has not read make complete (no I/O): the alerts, and the
        context norms moved for every partition to take (None if none moved)."""
        stage = self.restore()
        if time.monotonic() - self.budgets_read >= self.settings.budgets.refresh_s:
            self.read_budgets()
        out = StepOutput()
        for message in messages:
            if message.offset <= self.offset:
                continue
            received = decode_fleet_input(message.value)
            self.unsaved.extend(received.parts)
            out.alerts.extend(stage.take(received))
            self.offset = message.offset
        return out, stage.merged_norms()

    def commit(self) -> None:
        """Flush the sink (the alerts), then snapshot the stage with its offset, and the parts
        received since the last commit that still wait (one insert). Parts judged long ago are
        deleted now and then."""
        if self.stage is None:
            return
        with timed(partial(self.instruments.wrote, "flush")):
            self.store.flush()
        judged = self.stage.judged_s
        rows = [
            (self.part_key(p.due_s, p.partition, p.chunk), self.offset, encode_part(p))
            for p in self.unsaved
            if p.due_s > judged
        ]
        rows.append((self.key, self.offset, self.stage.snapshot()))
        with timed(partial(self.instruments.saved, "fleet", sum(len(r[2]) for r in rows))):
            self.store.save_snapshots(rows)
        self.unsaved.clear()
        if judged - self.pruned_s >= PRUNE_EVERY_S:
            self.store.delete_snapshots(self.part_prefix, below=self.part_key(judged + 0.001))
            self.pruned_s = judged

    def drop(self) -> None:
        self.stage, self.offset, self.unsaved = None, -1, []
