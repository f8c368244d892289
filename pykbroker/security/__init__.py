"""Who is on the other end of a connection: TLS identities, SASL mechanisms, principals.

``principal`` maps client certificates to principals (``ssl.principal.mapping.rules``);
``jaas`` parses Kafka's JAAS syntax; ``plain`` and ``scram`` are the SASL mechanisms;
``credentials`` keeps SCRAM credentials; ``tls`` builds the server's SSL contexts;
``listener_security`` turns the broker configuration into one plan per listener; and
``authenticator`` is the per-connection SASL state machine. Nothing here imports trio's
networking or the server: ``server/`` wraps the stream and drives the authenticator.
"""
