"""Coordinators: state machines whose durable state is replayed from internal topics."""
