"""The Kafka transport: the only package that imports kafka-python.

``settings`` (the Kafka part of the configuration), ``clients`` (kafka-python
options and connecting), ``types`` (the transport's own partition, record and
acknowledgement types: no kafka-python type leaves this package),
``publisher`` (queued sends, and the one "all acknowledged or raise"),
``listener`` (consumer-group member with manual commits), ``reader`` (read or
follow partitions without a group), ``admin`` (provisioning, end offsets, lag),
``dlq`` (read and replay dead letters), ``partitions`` (a sagaId's home
partition), ``broker`` (the embedded development broker) and ``procstat`` (a
local process's ``/proc`` stat fields).
"""
