"""The SASL, SCRAM credential, ACL and client quota APIs: registered with every broker (ApiVersions lists
them, as Kafka's does), their modules and codecs imported when the first such request arrives.
"""

from __future__ import annotations

from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import HandlerSpec, imported_on_first_use

_SASL = "pykbroker.handlers.sasl"
_ACLS = "pykbroker.handlers.acls"
_QUOTAS = "pykbroker.handlers.quotas"

HANDLERS = [
    HandlerSpec(ApiKey.SASL_HANDSHAKE, 0, 1, imported_on_first_use(_SASL, "handle_sasl_handshake")),
    HandlerSpec(ApiKey.SASL_AUTHENTICATE, 0, 2,
                imported_on_first_use(_SASL, "handle_sasl_authenticate")),
    HandlerSpec(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, 0,
                imported_on_first_use(_SASL, "handle_describe_user_scram_credentials")),
    HandlerSpec(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0, 0,
                imported_on_first_use(_SASL, "handle_alter_user_scram_credentials")),
    HandlerSpec(ApiKey.DESCRIBE_ACLS, 0, 3, imported_on_first_use(_ACLS, "handle_describe_acls")),
    HandlerSpec(ApiKey.CREATE_ACLS, 0, 3, imported_on_first_use(_ACLS, "handle_create_acls")),
    HandlerSpec(ApiKey.DELETE_ACLS, 0, 3, imported_on_first_use(_ACLS, "handle_delete_acls")),
    HandlerSpec(ApiKey.DESCRIBE_CLIENT_QUOTAS, 0, 1,
                imported_on_first_use(_QUOTAS, "handle_describe_client_quotas")),
    HandlerSpec(ApiKey.ALTER_CLIENT_QUOTAS, 0, 1,
                imported_on_first_use(_QUOTAS, "handle_alter_client_quotas")),
]
