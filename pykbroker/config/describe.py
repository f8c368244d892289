"""DescribeConfigs answers: each key's value, source, synonyms, type and documentation.

Follows Kafka 3.9's ConfigHelper line by line (createBrokerConfigEntry, createTopicConfigEntry,
configSynonyms), since admin tools and clients display these fields as they come.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from pykbroker.config.broker_config import BrokerConfig
from pykbroker.config.checks import find_def
from pykbroker.config.defs import BROKER_DEFS
from pykbroker.config.topic import (
    TOPIC_DEFS,
    TOPIC_SERVER_SYNONYMS,
    topic_config_defaults,
    validate_topic_configs,
)
from pykbroker.config.types import (
    UNKNOWN_TYPE_CODE,
    ConfigEntry,
    ConfigSource,
    ConfigSynonym,
    render_value,
)


def describe_broker_configs(
    broker: BrokerConfig, names: Collection[str] | None = None
) -> list[ConfigEntry]:
    """DescribeConfigs entries for this broker, as Kafka's ConfigHelper.createBrokerConfigEntry.

    Every defined key, then listener-prefixed and unknown keys that were set (Kafka cannot
    type those, so it marks them sensitive and hides their values).
    """
    keys = [*BROKER_DEFS, *broker.extra_keys()]
    entries: list[ConfigEntry] = []
    for name in keys:
        if names is not None and name not in names:
            continue
        defn = find_def(name)
        sensitive = defn is None or defn.sensitive
        value = None if sensitive else render_value(defn.type if defn else None,
                                                    broker.value(name))
        synonyms = broker.config_synonyms(name)
        source = synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG
        read_only = defn is None or name not in BROKER_DEFS or defn.read_only
        entries.append(ConfigEntry(
            name, value, int(source), source == ConfigSource.DEFAULT_CONFIG, read_only,
            sensitive, defn.type.code if defn else UNKNOWN_TYPE_CODE,
            defn.documentation if defn else None, synonyms,
        ))
    return entries


def describe_topic_configs(
    broker: BrokerConfig,
    overrides: Mapping[str, str],
    names: Collection[str] | None = None,
) -> list[ConfigEntry]:
    """DescribeConfigs entries for a topic, as Kafka's ConfigHelper.createTopicConfigEntry.

    Synonyms: the TOPIC_CONFIG override (if any), then the broker synonyms that are set
    dynamically, statically, or have a default, dropping those listed before the topic key's
    first broker synonym (so ``retention.ms`` shows no ``log.retention.hours`` default, as
    in Kafka).
    """
    known = {k: v for k, v in overrides.items() if k in TOPIC_DEFS}
    values = topic_config_defaults(broker)
    values.update(validate_topic_configs(known))
    entries: list[ConfigEntry] = []
    for name, defn in TOPIC_DEFS.items():
        if names is not None and name not in names:
            continue
        value = render_value(defn.type, values[name])
        server = TOPIC_SERVER_SYNONYMS.get(name)
        synonyms = [] if server is None else broker.config_synonyms(server)
        if name in known:
            synonyms.insert(0, ConfigSynonym(name, value, int(ConfigSource.TOPIC_CONFIG)))
        source = synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG
        entries.append(
            ConfigEntry(name, value, int(source), source == ConfigSource.DEFAULT_CONFIG,
                        False, False, defn.type.code, defn.documentation, synonyms)
        )
    for name in sorted(set(overrides) - set(known)):
        if names is None or name in names:
            # Kafka treats a key it cannot type as sensitive and hides its value.
            synonym = ConfigSynonym(name, None, int(ConfigSource.TOPIC_CONFIG))
            entries.append(ConfigEntry(name, None, int(ConfigSource.TOPIC_CONFIG), False, False,
                                       True, UNKNOWN_TYPE_CODE, None, [synonym]))
    return entries
