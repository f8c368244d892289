"""Transactions: the coordinator of transactional ids and ``__transaction_state``."""

from pykbroker.coordinator.transaction.coordinator import (
    InitResult,
    TransactionCoordinator,
    TxnConfig,
)
from pykbroker.coordinator.transaction.metadata import (
    TRANSACTION_STATE_TOPIC,
    TransactionMetadata,
    TxnState,
)

__all__ = [
    "TRANSACTION_STATE_TOPIC",
    "InitResult",
    "TransactionCoordinator",
    "TransactionMetadata",
    "TxnConfig",
    "TxnState",
]
