"""Principals as Kafka writes them (``User:alice``): what ACLs, quotas and logs name.

The certificate-to-principal mapping is ``ssl_principal``; SASL names its user directly.
"""

from __future__ import annotations

USER_TYPE = "User"
ANONYMOUS = "User:ANONYMOUS"


def user(name: str) -> str:
    return f"{USER_TYPE}:{name}"
