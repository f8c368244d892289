"""Znode JSON exactly as Kafka 3.9 writes or documents it parses to the expected values, and
our encoders write the same bytes.

Sources (apache/kafka, branch 3.9): ``core/src/test/scala/unit/kafka/cluster/BrokerEndPointTest.scala``
(broker registrations), ``core/src/test/scala/unit/kafka/zk/KafkaZkClientTest.scala`` (ISR
change), ``.../zk/ReassignPartitionsZNodeTest.scala``, ``.../zk/migration/
ZkConfigMigrationClientTest.scala`` (config change), ``core/src/test/scala/kafka/zk/
FeatureZNodeTest.scala``, ``docs/implementation.html`` (partition state key order) and the
encoders in ``core/src/main/scala/kafka/zk/ZkData.scala``. Key order of the HashMap-backed
encoders (broker, topic, partition state, feature) is Scala 2.13's iteration order.
"""

from __future__ import annotations

import uuid

import pytest

from pykbroker.metadata.zk.admin import DeleteTopic, PartitionReassignment, PreferredReplicaElection
from pykbroker.metadata.zk.brokers import (
    BrokerRegistration,
    BrokerSequenceId,
    EndPoint,
    SupportedVersionRange,
)
from pykbroker.metadata.zk.cluster_id import ClusterId
from pykbroker.metadata.zk.codec import ZNodeDecodeError, kafka_uuid_from_str
from pykbroker.metadata.zk.configs import ConfigChangeNotification, EntityConfig
from pykbroker.metadata.zk.controller import ControllerEpoch, ControllerRegistration
from pykbroker.metadata.zk.features import FeatureZNode
from pykbroker.metadata.zk.isr_changes import IsrChangeNotification
from pykbroker.metadata.zk.layout import PERSISTENT_PATHS
from pykbroker.metadata.zk.producer_ids import ProducerIdBlock
from pykbroker.metadata.zk.topics import PartitionState, ReplicaAssignment, TopicAssignment

TOPIC_ID = "J0mOhNE5Q0q3IFvdjU_rjw"


def test_paths() -> None:
    assert ClusterId.path() == "/cluster/id"
    assert ControllerRegistration.path() == "/controller"
    assert ControllerEpoch.path() == "/controller_epoch"
    assert BrokerRegistration.path(3) == "/brokers/ids/3"
    assert BrokerSequenceId.path() == "/brokers/seqid"
    assert TopicAssignment.path("orders") == "/brokers/topics/orders"
    assert PartitionState.path("orders", 2) == "/brokers/topics/orders/partitions/2/state"
    assert EntityConfig.path("topics", "orders") == "/config/topics/orders"
    assert EntityConfig.path("brokers", "<default>") == "/config/brokers/<default>"
    assert ConfigChangeNotification.create_path() == "/config/changes/config_change_"
    assert ConfigChangeNotification.sequence_number("config_change_0000000012") == 12
    assert DeleteTopic.path("orders") == "/admin/delete_topics/orders"
    assert PartitionReassignment.path() == "/admin/reassign_partitions"
    assert PreferredReplicaElection.path() == "/admin/preferred_replica_election"
    assert IsrChangeNotification.create_path() == "/isr_change_notification/isr_change_"
    assert IsrChangeNotification.sequence_number("isr_change_0000000001") == 1
    assert ProducerIdBlock.path() == "/latest_producer_id_block"
    assert FeatureZNode.path() == "/feature"
    assert "/config/brokers" in PERSISTENT_PATHS and "/brokers/seqid" in PERSISTENT_PATHS


# --- /brokers/ids/<id> ---------------------------------------------------------------------


def test_broker_v5_as_a_3_9_broker_writes_it() -> None:
    registration = BrokerRegistration(
        endpoints=(EndPoint("PLAINTEXT", "PLAINTEXT", "localhost", 9092),),
        timestamp=1700000000000,
        features={"metadata.version": SupportedVersionRange(1, 21)},
    )
    golden = (
        b'{"features":{"metadata.version":{"min_version":1,"max_version":21}},'
        b'"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},'
        b'"endpoints":["PLAINTEXT://localhost:9092"],"jmx_port":-1,"port":9092,'
        b'"host":"localhost","version":5,"timestamp":"1700000000000"}'
    )
    assert registration.to_json() == golden
    assert BrokerRegistration.from_json(golden) == registration


def test_broker_without_plaintext_listener_has_null_host() -> None:
    registration = BrokerRegistration(
        endpoints=(
            EndPoint("SSL", "SSL", "::1", 9093),
            EndPoint("INTERNAL", "SASL_PLAINTEXT", None, 9094),
        ),
        timestamp=5,
        rack="rack-a",
    )
    assert registration.to_json() == (
        b'{"features":{},"listener_security_protocol_map":{"SSL":"SSL","INTERNAL":"SASL_PLAINTEXT"},'
        b'"endpoints":["SSL://[::1]:9093","INTERNAL://:9094"],"rack":"rack-a","jmx_port":-1,'
        b'"port":-1,"host":null,"version":5,"timestamp":"5"}'
    )


def test_broker_v1() -> None:
    golden = (
        b'{"jmx_port":-1,"timestamp":"1420485325400","host":"172.16.8.243","version":1,"port":9091}'
    )
    assert BrokerRegistration.from_json(golden) == BrokerRegistration(
        endpoints=(EndPoint("PLAINTEXT", "PLAINTEXT", "172.16.8.243", 9091),),
        timestamp=1420485325400,
        version=1,
    )


def test_broker_v2_and_future_version() -> None:
    v2 = b"""{
      "version":2,
      "host":"localhost",
      "port":9092,
      "jmx_port":9999,
      "timestamp":"1416974968782",
      "endpoints":["PLAINTEXT://localhost:9092"]
    }"""
    parsed = BrokerRegistration.from_json(v2)
    assert parsed.endpoints == (EndPoint("PLAINTEXT", "PLAINTEXT", "localhost", 9092),)
    assert (parsed.jmx_port, parsed.rack, parsed.features) == (9999, None, {})
    future = b"""{
      "foo":"bar",
      "version":100,
      "host":"localhost",
      "port":9092,
      "jmx_port":9999,
      "timestamp":"1416974968782",
      "endpoints":["SSL://localhost:9093"]
    }"""
    assert BrokerRegistration.from_json(future).endpoints == (
        EndPoint("SSL", "SSL", "localhost", 9093),
    )


def test_broker_v3_with_rack() -> None:
    golden = b"""{
      "version":3,
      "host":"localhost",
      "port":9092,
      "jmx_port":9999,
      "timestamp":"2233345666",
      "endpoints":["PLAINTEXT://host1:9092", "SSL://host1:9093"],
      "rack":"dc1"
    }"""
    parsed = BrokerRegistration.from_json(golden)
    assert parsed.endpoints == (
        EndPoint("PLAINTEXT", "PLAINTEXT", "host1", 9092),
        EndPoint("SSL", "SSL", "host1", 9093),
    )
    assert (parsed.rack, parsed.timestamp, parsed.host, parsed.port) == (
        "dc1",
        2233345666,
        "host1",
        9092,
    )


@pytest.mark.parametrize("rack", ['"rack":null,', ""])
def test_broker_v4_with_null_or_no_rack(rack: str) -> None:
    golden = f"""{{
      {rack}
      "version":4,
      "host":"localhost",
      "port":9092,
      "jmx_port":9999,
      "timestamp":"2233345666",
      "endpoints":["CLIENT://host1:9092", "REPLICATION://host1:9093"],
      "listener_security_protocol_map":{{"CLIENT":"SSL", "REPLICATION":"PLAINTEXT"}}
    }}""".encode()
    parsed = BrokerRegistration.from_json(golden)
    assert parsed.rack is None
    assert parsed.endpoints == (
        EndPoint("CLIENT", "SSL", "host1", 9092),
        EndPoint("REPLICATION", "PLAINTEXT", "host1", 9093),
    )


def test_broker_v5_features() -> None:
    golden = b"""{
      "version":5,
      "host":"localhost",
      "port":9092,
      "jmx_port":9999,
      "timestamp":"2233345666",
      "endpoints":["CLIENT://host1:9092", "REPLICATION://host1:9093"],
      "listener_security_protocol_map":{"CLIENT":"SSL", "REPLICATION":"PLAINTEXT"},
      "rack":"dc1",
      "features": {"feature1": {"min_version": 1, "max_version": 2}, "feature2": {"min_version": 2, "max_version": 4}}
    }"""
    parsed = BrokerRegistration.from_json(golden)
    assert parsed.rack == "dc1"
    assert parsed.features == {
        "feature1": SupportedVersionRange(1, 2),
        "feature2": SupportedVersionRange(2, 4),
    }


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not JSON"),
        (b"[1]", "expected a JSON object"),
        (b'{"version":5,"endpoints":[]}', "missing 'jmx_port'"),
        (b'{"version":"5","jmx_port":-1,"endpoints":[]}', "'version' must be a 32-bit integer"),
        (b'{"version":0,"jmx_port":-1}', "unsupported version 0"),
        (
            b'{"version":5,"jmx_port":-1,"endpoints":["CLIENT://h:1"]}',
            "no security protocol defined for listener CLIENT",
        ),
        (b'{"version":5,"jmx_port":-1,"endpoints":["PLAINTEXT:/h:1"]}', "unable to parse"),
        (
            b'{"version":5,"jmx_port":-1,"endpoints":[],"features":{"f":{"min_version":3,"max_version":2}}}',
            "expected 0 <= min_version <= max_version",
        ),
    ],
)
def test_broker_garbage(data: bytes, problem: str) -> None:
    with pytest.raises(ZNodeDecodeError, match=f"broker registration znode.*{problem}"):
        BrokerRegistration.from_json(data)


def test_broker_sequence_id() -> None:
    assert BrokerSequenceId.broker_id(zk_version=1, reserved_broker_max_id=1000) == 1001


# --- /brokers/topics/<topic> and its partition states ----------------------------------------


def test_topic_v3_as_kafka_writes_it() -> None:
    assignment = TopicAssignment(
        {
            0: ReplicaAssignment((1, 2)),
            1: ReplicaAssignment((2, 3, 4), adding_replicas=(4,), removing_replicas=(3,)),
        },
        topic_id=kafka_uuid_from_str(TOPIC_ID, "test"),
    )
    golden = (
        b'{"partitions":{"0":[1,2],"1":[2,3,4]},"topic_id":"' + TOPIC_ID.encode() + b'",'
        b'"adding_replicas":{"1":[4]},"removing_replicas":{"1":[3]},"version":3}'
    )
    assert assignment.to_json() == golden
    assert TopicAssignment.from_json(golden) == assignment


def test_topic_before_topic_ids() -> None:
    """Version 1 (before 2.4) had only partitions; version 2 (before 2.8) had no topic_id."""
    assert TopicAssignment.from_json(b'{"version":1,"partitions":{"0":[0,1],"1":[1,0]}}') == (
        TopicAssignment({0: ReplicaAssignment((0, 1)), 1: ReplicaAssignment((1, 0))})
    )
    v2 = b'{"version":2,"partitions":{"0":[0]},"adding_replicas":{},"removing_replicas":{}}'
    assert TopicAssignment.from_json(v2) == TopicAssignment({0: ReplicaAssignment((0,))})
    assert TopicAssignment.from_json(b"{}") == TopicAssignment({})


@pytest.mark.parametrize(
    "data",
    [
        b'{"partitions":{"zero":[1]}}',
        b'{"partitions":{"0":[1.0]}}',
        b'{"partitions":{"0":["1"]}}',
        b'{"partitions":[1]}',
        b'{"topic_id":"not-a-uuid"}',
        b'{"topic_id":"J0mOhNE5Q0q3IFvdjU/rjw"}',
    ],
)
def test_topic_garbage(data: bytes) -> None:
    with pytest.raises(ZNodeDecodeError, match="topic znode"):
        TopicAssignment.from_json(data)


def test_partition_state_as_kafka_writes_it() -> None:
    state = PartitionState(leader=1, leader_epoch=0, isr=(1, 2, 3), controller_epoch=1)
    golden = b'{"controller_epoch":1,"leader":1,"version":1,"leader_epoch":0,"isr":[1,2,3]}'
    assert state.to_json() == golden
    assert PartitionState.from_json(golden) == state


def test_partition_state_recovering() -> None:
    state = PartitionState(1, 6, (1,), 10, leader_recovery_state=1)
    golden = (
        b'{"controller_epoch":10,"leader":1,"version":1,"leader_recovery_state":1,'
        b'"leader_epoch":6,"isr":[1]}'
    )
    assert state.to_json() == golden
    assert PartitionState.from_json(golden) == state


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"leader":1,"leader_epoch":0,"isr":[1]}', "missing 'controller_epoch'"),
        (
            b'{"leader":1,"leader_epoch":0,"isr":[1],"controller_epoch":1,"leader_recovery_state":2}',
            "unknown leader recovery state 2",
        ),
        (
            b'{"leader":4294967296,"leader_epoch":0,"isr":[1],"controller_epoch":1}',
            "'leader' must be a 32-bit integer",
        ),
        (
            b'{"leader":true,"leader_epoch":0,"isr":[1],"controller_epoch":1}',
            "'leader' must be a 32-bit integer",
        ),
        (
            b'{"leader":1,"leader_epoch":0,"isr":1,"controller_epoch":1}',
            "'isr' must be a JSON array",
        ),
        (b'{"leader":NaN,"leader_epoch":0,"isr":[],"controller_epoch":1}', "not JSON"),
    ],
)
def test_partition_state_garbage(data: bytes, problem: str) -> None:
    with pytest.raises(ZNodeDecodeError, match=f"partition state znode.*{problem}"):
        PartitionState.from_json(data)


# --- /controller, /controller_epoch, /cluster/id --------------------------------------------


def test_controller() -> None:
    golden = b'{"version":2,"brokerid":1,"timestamp":"1700000000000","kraftControllerEpoch":-1}'
    registration = ControllerRegistration(broker_id=1, timestamp=1700000000000)
    assert registration.to_json() == golden
    assert ControllerRegistration.from_json(golden) == registration
    # Version 1 (before the KRaft migration) had no kraftControllerEpoch.
    v1 = b'{"version":1,"brokerid":3,"timestamp":"1533045120491"}'
    assert ControllerRegistration.from_json(v1) == ControllerRegistration(3, 1533045120491, -1)
    # Kafka never reads the timestamp, so an odd one is no reason to fail.
    assert ControllerRegistration.from_json(b'{"brokerid":3,"timestamp":"x"}').timestamp == -1
    with pytest.raises(ZNodeDecodeError, match="controller znode.*missing 'brokerid'"):
        ControllerRegistration.from_json(b'{"version":2}')


def test_controller_epoch() -> None:
    assert ControllerEpoch(7).to_json() == b"7"
    assert ControllerEpoch.from_json(b"7") == ControllerEpoch(7)
    assert ControllerEpoch.from_json(b"-1") == ControllerEpoch(-1)
    for garbage in (b"", b" 7", b"7\n", b"1_0", b"2147483648", b'{"epoch":1}', b"\xff"):
        with pytest.raises(ZNodeDecodeError, match="controller epoch znode"):
            ControllerEpoch.from_json(garbage)


def test_cluster_id() -> None:
    golden = b'{"version":"1","id":"' + TOPIC_ID.encode() + b'"}'
    assert ClusterId(TOPIC_ID).to_json() == golden
    assert ClusterId.from_json(golden) == ClusterId(TOPIC_ID)
    with pytest.raises(ZNodeDecodeError, match="cluster id znode.*'id' must be a string"):
        ClusterId.from_json(b'{"version":"1","id":1}')


# --- /config ---------------------------------------------------------------------------------


def test_entity_config() -> None:
    golden = b'{"version":1,"config":{"cleanup.policy":"compact","retention.ms":"1000"}}'
    config = EntityConfig({"cleanup.policy": "compact", "retention.ms": "1000"})
    assert config.to_json() == golden
    assert EntityConfig.from_json(golden) == config
    # Kafka reads a missing or odd "config", or no data at all, as no overrides.
    assert EntityConfig.from_json(b"") == EntityConfig()
    assert EntityConfig.from_json(b'{"version":1}') == EntityConfig()
    assert EntityConfig().to_json() == b'{"version":1,"config":{}}'
    with pytest.raises(ZNodeDecodeError, match="'retention.ms' must be a string"):
        EntityConfig.from_json(b'{"version":1,"config":{"retention.ms":1000}}')


def test_config_change_notification() -> None:
    golden = b'{"version":2,"entity_path":"brokers/1"}'
    assert ConfigChangeNotification("brokers", "1").to_json() == golden
    assert ConfigChangeNotification.from_json(golden) == ConfigChangeNotification("brokers", "1")
    user_client = ConfigChangeNotification.from_json(
        b'{"version":2,"entity_path":"users/alice/clients/app"}'
    )
    assert (user_client.entity_type, user_client.entity_name) == ("users", "alice/clients/app")
    v1 = b'{"version":1,"entity_type":"topics","entity_name":"x"}'
    assert ConfigChangeNotification.from_json(v1) == ConfigChangeNotification("topics", "x")


@pytest.mark.parametrize(
    "data",
    [
        b'{"version":3,"entity_path":"topics/x"}',
        b'{"version":2}',
        b'{"version":2,"entity_path":"/config/topics/topic1"}',
        b'{"version":2,"entity_path":"topics"}',
        b'{"version":1,"entity_type":"brokers","entity_name":"1"}',
    ],
)
def test_config_change_garbage(data: bytes) -> None:
    with pytest.raises(ZNodeDecodeError, match="config change notification"):
        ConfigChangeNotification.from_json(data)


# --- /admin, /isr_change_notification, /latest_producer_id_block, /feature ------------------


def test_partition_reassignment() -> None:
    golden = b'{"version":1,"partitions":[{"topic":"foo","partition":0,"replicas":[1,2]}]}'
    reassignment = PartitionReassignment({("foo", 0): (1, 2)})
    assert reassignment.to_json() == golden
    assert PartitionReassignment.from_json(golden) == reassignment
    with pytest.raises(ZNodeDecodeError, match="partition reassignment znode.*missing 'replicas'"):
        PartitionReassignment.from_json(
            b'{"version":1,"partitions":[{"topic":"foo","partition":0}]}'
        )


def test_preferred_replica_election_and_isr_change() -> None:
    golden = (
        b'{"version":1,"partitions":[{"topic":"topic-a","partition":0},'
        b'{"topic":"topic-b","partition":0}]}'
    )
    partitions = (("topic-a", 0), ("topic-b", 0))
    assert PreferredReplicaElection(partitions).to_json() == golden
    assert PreferredReplicaElection.from_json(golden) == PreferredReplicaElection(partitions)
    assert IsrChangeNotification(partitions).to_json() == golden
    assert IsrChangeNotification.from_json(golden) == IsrChangeNotification(partitions)
    with pytest.raises(ZNodeDecodeError, match="'partitions' must be an array of JSON objects"):
        IsrChangeNotification.from_json(b'{"version":1,"partitions":["topic-a"]}')


def test_producer_id_block() -> None:
    golden = b'{"version":1,"broker":0,"block_start":"0","block_end":"999"}'
    first = ProducerIdBlock.first(0)
    assert first.to_json() == golden
    assert ProducerIdBlock.from_json(golden) == first
    assert first.next(2) == ProducerIdBlock(2, 1000, 1999)
    assert ProducerIdBlock.from_json_or_none(b"") is None
    with pytest.raises(ZNodeDecodeError, match="'block_start' must be a string"):
        ProducerIdBlock.from_json(b'{"version":1,"broker":0,"block_start":0,"block_end":"999"}')
    with pytest.raises(ZNodeDecodeError, match="not a 64-bit integer"):
        ProducerIdBlock.from_json(
            b'{"version":1,"broker":0,"block_start":"9223372036854775808","block_end":"1"}'
        )
    with pytest.raises(OverflowError):
        ProducerIdBlock(0, 2**63 - 1000, 2**63 - 1).next(0)


def test_feature_znode() -> None:
    v2 = FeatureZNode({"feature1": 2})
    assert (
        v2.to_json() == b'{"features":{"feature1":{"max_version_level":2}},"version":2,"status":1}'
    )
    assert FeatureZNode.from_json(v2.to_json()) == v2
    v1 = b"""{
      "version":1,
      "status":1,
      "features":{"feature1": {"min_version_level": 1, "max_version_level": 2}, "feature2": {"min_version_level": 2, "max_version_level": 4}}
    }"""
    assert FeatureZNode.from_json(v1) == FeatureZNode({"feature1": 2, "feature2": 4}, 1, 1)
    for garbage in (
        b'{"version":3,"status":1,"features":{}}',
        b'{"version":2,"features":{}}',
        b'{"version":2,"status":1}',
        b'{"version":1,"status":1,"features":{"f":{"max_version_level":2}}}',
        b'{"version":2,"status":1,"features":{"f":{"max_version_level":0}}}',
    ):
        with pytest.raises(ZNodeDecodeError, match="feature znode"):
            FeatureZNode.from_json(garbage)


def test_kafka_uuid_text() -> None:
    topic_id = kafka_uuid_from_str(TOPIC_ID, "test")
    assert isinstance(topic_id, uuid.UUID)
    assert TopicAssignment({}, topic_id).to_json() == (
        b'{"partitions":{},"topic_id":"' + TOPIC_ID.encode() + b'","adding_replicas":{},'
        b'"removing_replicas":{},"version":3}'
    )
