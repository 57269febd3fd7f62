"""The saga engine: the orchestrator's moving parts, on top of the pure core.

- :mod:`~actors.engine.host`: ``SagaHost``, the composition of the parts below:
  many sagas in one process for the partitions it owns;
- :mod:`~actors.engine.inbound`: a consumed record to an input of the core, or
  the reason it is refused (pure);
- :mod:`~actors.engine.books`: per-partition books (live sagas, ended ones,
  late reports, log position);
- :mod:`~actors.engine.owner`: ``PartitionOwner``, the partitions a host owns,
  taken, given up and fenced; :mod:`~actors.engine.claims` takes one over (the
  claim, then the restore up to it);
- :mod:`~actors.engine.controller`: ``Controller``, which grants partitions to
  hosts and moves them, by the pure plan of :mod:`~actors.engine.assignment`;
- :mod:`~actors.engine.watch`: a log that lost what the host read stops it;
- :mod:`~actors.engine.clock`: the host's wall clock that moves only as the
  monotonic one does (deadlines survive a clock jump);
- :mod:`~actors.engine.rehearsal`: a host's steps offline, for a dry run;
- :mod:`~actors.engine.write_ahead`: the batch of staged decisions and dead
  letters, appended and acknowledged before anything becomes current;
- :mod:`~actors.engine.timers`: the deadline heap and the re-send queue;
- :mod:`~actors.engine.restore`: books back from the newest snapshot and the
  log tail, deadlines re-armed;
- :mod:`~actors.engine.snapshots`: per-partition snapshots on
  ``saga.snapshots`` (chunks and a manifest);
- :mod:`~actors.engine.stats`: what a host reports (per batch, per host, and
  its Prometheus counters);
- :mod:`~actors.engine.router`: ``RouterActor``, the consumer-group member that
  hands consumed records to the host that owns their saga;
- :mod:`~actors.engine.workers`: the consumer loops of the Ray actors, which
  retry the broker in place and never die alone;
- :mod:`~actors.engine.settings`: the host's and the engine's settings.

Nothing here starts Ray actors: :mod:`actors.runtime` does.
"""
