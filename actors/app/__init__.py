"""The operator surface and the composition root.

- :mod:`~actors.app.config`: the one configuration (file, environment, flags);
- :mod:`~actors.app.client`: ``SagaClient``, start sagas and read them back;
- :mod:`~actors.app.metrics`: the Prometheus endpoint;
- :mod:`~actors.app.platform`: starting the platform for ``saga serve`` and
  ``saga run``: Kafka (or an embedded broker) with its topics, then the engine,
  the projection writer and the services on Ray, stopped in order;
- :mod:`~actors.app.run`: ``saga run``, the whole platform with a workload and
  an audit (the workload, chaos, following the log, the audit, the summary);
- :mod:`~actors.app.cli`: the ``saga`` command, one module per command group.
"""
