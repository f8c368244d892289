"""Kafka's broker and topic configuration: definitions, sources, validation, DescribeConfigs.

Modules depend one way, each only on those listed before it: ``types``; the definition
tables ``defs_extra``, ``defs_groups``, ``defs``; ``listeners`` and ``sources`` (parsing);
``topic`` and ``checks`` (validation); ``broker_config`` (BrokerConfig); ``describe``
(DescribeConfigs). This root only re-exports the public names; modules inside the package
import each other, never the root (that would close a circle through it).
"""

from pykbroker.config.broker_config import BrokerConfig
from pykbroker.config.defs import BROKER_DEFS
from pykbroker.config.describe import describe_broker_configs, describe_topic_configs
from pykbroker.config.listeners import Listener
from pykbroker.config.topic import (
    TOPIC_DEFS,
    message_timestamp_bounds,
    topic_config_defaults,
    validate_topic_configs,
)
from pykbroker.config.types import (
    ConfigDef,
    ConfigEntry,
    ConfigError,
    ConfigSource,
    ConfigSynonym,
    ConfigType,
    Importance,
    Password,
    UpdateMode,
)

__all__ = [
    "BROKER_DEFS",
    "TOPIC_DEFS",
    "BrokerConfig",
    "ConfigDef",
    "ConfigEntry",
    "ConfigError",
    "ConfigSource",
    "ConfigSynonym",
    "ConfigType",
    "Importance",
    "Listener",
    "Password",
    "UpdateMode",
    "describe_broker_configs",
    "describe_topic_configs",
    "message_timestamp_bounds",
    "topic_config_defaults",
    "validate_topic_configs",
]
