"""Who is on the other end of a connection, and what it may do.

``plan`` is the broker's security plan (one entry per listener, credentials, authorizer) and
the only module a PLAINTEXT broker without an authorizer loads, with ``principal`` (principal
names), ``credentials`` (SCRAM credentials, file-backed) and ``acl_codes`` (the codes every
handler's authorization check names). ``listener_security`` builds a secured listener's entry
(TLS contexts from PEM stores, JAAS, ``ssl_principal``'s certificate mapping); ``plain`` and
``scram`` are the SASL mechanisms and ``authenticator`` the per-connection SASL state machine;
``acls`` and ``acl_store`` are the ACL model and Kafka's AclAuthorizer. Nothing here imports
trio's networking or the server: ``server/`` wraps the stream and drives the authenticator.
"""
