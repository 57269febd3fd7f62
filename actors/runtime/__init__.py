"""Everything that puts the platform on Ray: restartable actors, started and
watched from the driver. Import the modules themselves: the package imports
nothing, so that reading the configuration does not start up Ray.

- :mod:`~actors.runtime.settings`: ``RaySettings``, where Ray runs;
- :mod:`~actors.runtime.ray`: connecting to Ray, waiting on actors;
- :mod:`~actors.runtime.engine`: ``Engine``, the saga hosts and routers;
- :mod:`~actors.runtime.participants`: the participant services as actors;
- :mod:`~actors.runtime.projection`: the projection writer as an actor;
- :mod:`~actors.runtime.placement`: the custom resources that place them.
"""
