"""pykbroker: a Kafka broker in Python that stock Kafka clients cannot tell apart from Kafka 3.9."""

__version__ = "0.1.0"
