"""The saga orchestrator, in layers that import only downwards: the pure saga
core (:mod:`actors.core`), the engine (:mod:`actors.engine`) beside the
participant services (:mod:`actors.participants`), the platform on Ray
(:mod:`actors.runtime`) and the operator surface (:mod:`actors.app`).
Beside the layers: :mod:`actors.errors` (the package's one error hierarchy) and
:mod:`actors.topology` (the platform's names for its consumer groups and
dead-letter sources)."""
