"""The controller's channel to each live broker (Kafka's ControllerChannelManager).

One queue and one sender task per broker, so each broker gets the controller's requests in
the order they were made; a request is retried on a new connection until it is answered or
the broker leaves the cluster (its queue is then dropped), as Kafka's RequestSendThread does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from pykbroker.cluster.broker_client import BrokerConnection, BrokerConnectionError
from pykbroker.cluster.metadata_cache import LiveBroker
from pykbroker.controller.requests import VERSIONS

log = logging.getLogger("pykbroker.controller.channel")

RETRY_BACKOFF_S = 0.1
RETRY_LOG_INTERVAL_S = 10.0
REQUEST_TIMEOUT_S = 30.0
QUEUE_SIZE = 10_000

# Called with (broker id, api key, request, response) on the controller's own task.
ResponseHandler = Callable[[int, int, Any, Any], None]


class _BrokerQueue:
    def __init__(self, broker: LiveBroker, listener: str, client_id: str) -> None:
        self.broker = broker
        ep = broker.endpoint(listener) or broker.endpoints[0]
        self.connection = BrokerConnection(ep.host, ep.port, client_id)
        self.send, self.receive = trio.open_memory_channel[tuple[int, Any, ResponseHandler | None]](
            QUEUE_SIZE)
        self.cancel = trio.CancelScope()


class ControllerChannel:
    def __init__(self, nursery: trio.Nursery, listener: str, controller_id: int) -> None:
        self._nursery = nursery
        self._listener = listener
        self._client_id = f"controller-{controller_id}"
        self._queues: dict[int, _BrokerQueue] = {}

    def add_broker(self, broker: LiveBroker) -> None:
        if broker.id in self._queues:
            return
        queue = self._queues[broker.id] = _BrokerQueue(broker, self._listener, self._client_id)
        self._nursery.start_soon(self._run, queue)

    def remove_broker(self, broker_id: int) -> None:
        queue = self._queues.pop(broker_id, None)
        if queue is not None:
            queue.cancel.cancel()

    def close(self) -> None:
        for broker_id in list(self._queues):
            self.remove_broker(broker_id)

    def send(self, broker_id: int, api_key: int, request: Any,
             on_response: ResponseHandler | None = None) -> None:
        queue = self._queues.get(broker_id)
        if queue is None:
            log.debug("not sending api %d to broker %d: not live", api_key, broker_id)
            return
        queue.send.send_nowait((api_key, request, on_response))

    async def _run(self, queue: _BrokerQueue) -> None:
        with queue.cancel:
            try:
                async for api_key, request, on_response in queue.receive:
                    try:
                        response = await self._send_until_answered(queue, api_key, request)
                        if on_response is not None:
                            on_response(queue.broker.id, api_key, request, response)
                    except Exception:  # a bug here must not take the broker down
                        log.exception("controller request %d to broker %d dropped", api_key,
                                      queue.broker.id)
            finally:
                await queue.connection.close()

    async def _send_until_answered(self, queue: _BrokerQueue, api_key: int,
                                   request: Any) -> Any:
        version = VERSIONS[api_key]
        failures, quiet_until = 0, 0.0
        while True:
            try:
                return await queue.connection.request(api_key, version, request,
                                                      REQUEST_TIMEOUT_S)
            except BrokerConnectionError as exc:
                failures += 1
                if trio.current_time() >= quiet_until:  # one line per 10 s, not per retry
                    quiet_until = trio.current_time() + RETRY_LOG_INTERVAL_S
                    log.info("controller request %d to broker %d failed %d time(s) (%s); "
                             "retrying", api_key, queue.broker.id, failures, exc)
                await trio.sleep(RETRY_BACKOFF_S)
