"""Client quotas (KIP-13, KIP-55, KIP-219, KIP-546), loaded on first use.

A broker whose first log directory holds no ``pykbroker-client-quotas.json`` has no quotas:
``services.client_quotas`` is None and Produce and Fetch record nothing (one attribute read per
request). The quota code itself (``pykbroker.quotas.manager``, ``.rate``) is imported only when
the file exists or AlterClientQuotas / DescribeClientQuotas arrive.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pykbroker.quotas.files import FILE_NAME

if TYPE_CHECKING:
    from pykbroker.quotas.manager import ClientQuotas

__all__ = ["FILE_NAME", "client_quotas_for_update", "load_client_quotas"]


def load_client_quotas(services: Any) -> ClientQuotas | None:
    """Set and return ``services.client_quotas``: the quotas kept in the first log directory,
    or None when none were ever set there."""
    quotas = None
    if os.path.exists(os.path.join(services.log_dirs[0], FILE_NAME)):
        from pykbroker.quotas.manager import ClientQuotas

        quotas = ClientQuotas.for_broker(services)
    services.client_quotas = quotas
    return quotas


def client_quotas_for_update(services: Any) -> ClientQuotas:
    """The broker's quotas, created (empty) if it had none: for AlterClientQuotas."""
    quotas: ClientQuotas | None
    try:
        quotas = services.client_quotas
    except AttributeError:
        quotas = load_client_quotas(services)
    if quotas is None:
        from pykbroker.quotas.manager import ClientQuotas

        quotas = ClientQuotas.for_broker(services)
        services.client_quotas = quotas
    return quotas
