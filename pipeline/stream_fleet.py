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
import pickle
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.detectors import default_detectors
from pipeline.engine import Message, StepOutput
from pipeline.fleet import FleetNorms, FleetStage, decode_fleet_input
from pipeline.storage import Store

log = logging.getLogger(__name__)


@dataclass
class StoredFleet:
    """The worker's :class:`FleetStage` and the offset of ``compute.minutes`` it has read."""

    settings: Settings
    store: Store
    stage: FleetStage | None = None
    offset: int = -1

    @property
    def key(self) -> str:
        kafka = self.settings.kafka
        return f"{kafka.consumer_group}/{kafka.minutes_topic}/fleet"

    def restore(self) -> FleetStage:
        """The fleet stage, restored on first use from its snapshot."""
        if self.stage is not None:
            return self.stage
        snapshot = self.store.load_snapshot(self.key)
        if snapshot is None:
            detectors = default_detectors(max_entities=self.settings.worker.max_entities)
            self.stage = FleetStage(self.settings, detectors, self.settings.kafka.partitions)
        else:
            self.offset, self.stage = snapshot[0], pickle.loads(snapshot[1])
            log.info("fleet stage: state restored at offset %d", self.offset)
        return self.stage

    def step(self, messages: list[Message]) -> tuple[StepOutput, FleetNorms]:
        """Judge what the messages it has not read make complete (no I/O): the alerts, and the
        context norms merged for every partition to take."""
        stage = self.restore()
        out = StepOutput()
        for message in messages:
            if message.offset <= self.offset:
                continue
            out.alerts.extend(stage.take(decode_fleet_input(message.value)))
            self.offset = message.offset
        return out, stage.merged_norms()

    def commit(self) -> None:
        """Flush the sink (the alerts), then snapshot the stage with its offset."""
        if self.stage is None:
            return
        self.store.flush()
        blob = pickle.dumps(self.stage, protocol=pickle.HIGHEST_PROTOCOL)
        self.store.save_snapshots([(self.key, self.offset, blob)])

    def drop(self) -> None:
        self.stage, self.offset = None, -1
