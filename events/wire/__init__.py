"""The wire: what the platform's records look like, with no I/O.

``messages`` (the command and reply Structs and their codec), ``dead_letters``
(the ``saga.dlq`` format), ``topics`` (the catalog and the naming rule),
``backoff`` (the one retry formula) and ``nesting`` (the depth bound checked
before any decoder recurses). Nothing here imports Kafka: the transport
(:mod:`events.transport`) moves these bytes.
"""
