"""The saga engine: the orchestrator's moving parts, on top of the pure core.

- :mod:`~actors.engine.host`: ``SagaHost``, many sagas in one process for the
  partitions it owns: write-ahead batches, durable timers, snapshots, restore;
- :mod:`~actors.engine.router`: ``RouterActor``, the consumer-group member that
  hands consumed records to the host that owns their saga;
- :mod:`~actors.engine.snapshots`: per-partition snapshots on
  ``saga.snapshots`` (chunks and a manifest);
- :mod:`~actors.engine.workers`: the consumer loops of the Ray actors, which
  retry the broker in place and never die alone.

Nothing here starts Ray actors: :mod:`actors.runtime` does.
"""
