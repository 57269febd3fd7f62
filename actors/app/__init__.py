"""The operator surface and the composition root.

- :mod:`~actors.app.config`: the one configuration (file, environment, flags);
- :mod:`~actors.app.client`: ``SagaClient``, start sagas and read them back;
- :mod:`~actors.app.metrics`: the Prometheus endpoint;
- :mod:`~actors.app.run`: ``saga run``, the whole platform with a workload and
  an audit;
- :mod:`~actors.app.cli`: the ``saga`` command.
"""
