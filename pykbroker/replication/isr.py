"""The leader's ISR: grow it when a follower catches up, shrink it when one lags, and record
every change with the controller (AlterPartition), as Kafka's Partition and
AlterPartitionManager do.

A proposed ISR is "pending" until the controller answers: while it is, the high watermark
waits for the larger of the two ISRs (Kafka's maximal ISR), so no record is called committed
before every replica the controller may end up counting has it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import trio

from pykbroker.cluster.broker_client import BrokerConnection, BrokerConnectionError
from pykbroker.cluster.replica_manager import Partition
from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.alter_partition_request import (
    AlterPartitionRequest,
    BrokerState,
    PartitionData,
    TopicData,
)
from pykbroker.protocol.api import ApiKey

log = logging.getLogger("pykbroker.replication.isr")

ALTER_PARTITION_VERSION = 3
RETRY_BACKOFF_S = 0.2
RETRY_LOG_INTERVAL_S = 10.0


def now_ms() -> int:
    return int(time.time() * 1000)


def lagging_replicas(part: Partition, now: int, lag_time_ms: int) -> list[int]:
    """ISR followers that have not caught up within ``replica.lag.time.max.ms``."""
    return [r for r in part.isr if r != part.leader_id
            and now - part.follower_state(r).last_caught_up_ms > lag_time_ms]


def may_join_isr(part: Partition, replica: int) -> bool:
    """Kafka's isFollowerInSync for expansion: it holds everything up to the high watermark
    and everything this leader wrote in its current epoch's first offset."""
    state = part.followers.get(replica)
    if state is None or replica in part.isr or replica not in part.replicas:
        return False
    entry = part.log.leader_epoch_cache.latest_entry()
    epoch_start = entry.start_offset if entry is not None and \
        entry.epoch == part.leader_epoch else 0
    return state.log_end_offset >= max(part.high_watermark, epoch_start)


class IsrManager:
    def __init__(self, node_id: int, broker_epoch: Callable[[], int], cache: Any,
                 listener: str, replicas: Any, lag_time_ms: Callable[[], int]) -> None:
        self.node_id = node_id
        self.broker_epoch = broker_epoch
        self.cache = cache
        self.listener = listener
        self.replicas = replicas
        self.lag_time_ms = lag_time_ms
        self._nursery: trio.Nursery | None = None
        self._connection: BrokerConnection | None = None
        self._controller = -1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Check for lagging followers every half ``replica.lag.time.max.ms``."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(max(self.lag_time_ms(), 100) / 2000.0)
                self.shrink_lagging(self.replicas.partitions.values())

    # -- triggers -----------------------------------------------------------------------------

    def on_follower_fetch(self, part: Partition, replica: int) -> None:
        """After a follower's fetch: move the high watermark, maybe let it into the ISR."""
        part.advance_high_watermark()  # (which wakes consumers and acks=all produces)
        if part.pending_isr is None and may_join_isr(part, replica) and \
                self.cache.broker(replica) is not None:
            self.propose(part, sorted([*part.isr, replica]))

    def shrink_lagging(self, parts: Iterable[Partition]) -> None:
        now = now_ms()
        lag = self.lag_time_ms()
        for part in list(parts):
            if not part.is_leader or part.pending_isr is not None or len(part.isr) <= 1:
                continue
            lagging = lagging_replicas(part, now, lag)
            if lagging:
                log.info("shrinking ISR of %s-%d from %s: %s lagging over %d ms", part.topic,
                         part.index, part.isr, lagging, lag)
                self.propose(part, [r for r in part.isr if r not in lagging])

    # -- AlterPartition -----------------------------------------------------------------------

    def propose(self, part: Partition, new_isr: list[int]) -> None:
        if self._nursery is None or new_isr == part.isr:
            return
        part.pending_isr = new_isr
        self._nursery.start_soon(self._alter, part, new_isr, part.leader_epoch)

    async def _connection_to_controller(self) -> BrokerConnection | None:
        controller = self.cache.controller_id
        broker = self.cache.broker(controller)
        ep = broker.endpoint(self.listener) if broker is not None else None
        if ep is None:
            return None
        if self._connection is None or self._controller != controller:
            if self._connection is not None:
                await self._connection.close()
            self._connection = BrokerConnection(ep.host, ep.port, f"broker-{self.node_id}-isr")
            self._controller = controller
        return self._connection

    async def _alter(self, part: Partition, new_isr: list[int], leader_epoch: int) -> None:
        """Send the change until the controller decides or this leadership ends."""
        request = AlterPartitionRequest(
            broker_id=self.node_id, broker_epoch=self.broker_epoch(),
            topics=[TopicData(topic_id=part.topic_id, partitions=[PartitionData(
                partition_index=part.index, leader_epoch=leader_epoch,
                new_isr_with_epochs=[BrokerState(broker_id=b, broker_epoch=-1)
                                     for b in new_isr],
                leader_recovery_state=0, partition_epoch=part.partition_epoch)])])
        failures, quiet_until = 0, 0.0
        while part.is_leader and part.leader_epoch == leader_epoch \
                and part.pending_isr == new_isr:
            connection = await self._connection_to_controller()
            if connection is None:
                await trio.sleep(RETRY_BACKOFF_S)
                continue
            try:
                response = await connection.request(ApiKey.ALTER_PARTITION,
                                                    ALTER_PARTITION_VERSION, request)
            except BrokerConnectionError as exc:
                failures += 1
                if trio.current_time() >= quiet_until:  # one line per 10 s, not per retry
                    quiet_until = trio.current_time() + RETRY_LOG_INTERVAL_S
                    log.info("AlterPartition for %s-%d failed %d time(s) (%s); retrying",
                             part.topic, part.index, failures, exc)
                await trio.sleep(RETRY_BACKOFF_S)
                continue
            self._apply(part, new_isr, leader_epoch, response)
            return

    def _apply(self, part: Partition, new_isr: list[int], leader_epoch: int,
               response: Any) -> None:
        if part.pending_isr == new_isr:
            part.pending_isr = None
            # A refused or outdated expansion no longer holds the high watermark back.
            part.advance_high_watermark()
        code = ErrorCode(response.error_code)
        result = response.topics[0].partitions[0] if code == ErrorCode.NONE and \
            response.topics and response.topics[0].partitions else None
        if result is not None:
            code = ErrorCode(result.error_code)
        if code != ErrorCode.NONE or result is None:
            log.info("AlterPartition of %s-%d to ISR %s refused: %s", part.topic, part.index,
                     new_isr, code.name)
            return
        if not part.is_leader or result.leader_epoch != part.leader_epoch:
            return  # a newer LeaderAndIsr already says what is true
        if result.partition_epoch >= part.partition_epoch:
            log.info("ISR of %s-%d is now %s (partition epoch %d)", part.topic, part.index,
                     list(result.isr), result.partition_epoch)
            part.isr = list(result.isr)
            part.partition_epoch = result.partition_epoch
            part.advance_high_watermark()  # (which wakes the clients if it moved)
            part.wake_replicas()  # followers' idle partitions are checked again
