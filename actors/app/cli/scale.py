"""``saga scale``: change a running engine's hosts and routers while sagas run."""

from __future__ import annotations

import argparse

from actors.app.cli.common import Commands, print_json, require_kafka
from actors.app.config import SagaConfig
from actors.errors import UsageError


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    scale = commands.add_parser(
        "scale",
        parents=[common],
        help="change a running engine's hosts and routers",
        description="Change how many saga hosts and routers a named engine "
        "runs (one started by saga serve with engine.name set), while sagas "
        "run: new hosts take partitions over from the others (each moves with "
        "a claim and a restore, its sagas waiting meanwhile); hosts removed "
        "first hand theirs over. Needs the engine's Ray (--ray-address) and "
        "Kafka (--bootstrap-servers). Prints which host owns which partition.",
    )
    scale.add_argument("--hosts", type=int, metavar="N", help="saga hosts to run")
    scale.add_argument("--routers", type=int, metavar="M", help="routers to run")
    scale.add_argument("--name", metavar="NAME", help="the engine's name (engine.name)")
    scale.add_argument("--json", action="store_true", help="print JSON")
    scale.set_defaults(handler=scale_engine)


def scale_engine(args: argparse.Namespace, config: SagaConfig) -> int:
    name = args.name or config.engine.name
    if not name:
        raise UsageError(
            "saga scale acts on a named engine: pass --name NAME (the "
            "engine.name saga serve was started with)"
        )
    if args.hosts is None and args.routers is None:
        raise UsageError("pass --hosts N, --routers M or both")
    require_kafka(config)
    # Ray is imported here, not at the top: the other commands start without.
    import msgspec

    from actors.runtime.engine import Engine
    from actors.runtime.ray import ensure_ray

    ensure_ray(config.ray, quiet=True)
    settings = msgspec.structs.replace(config.engine, name=name)
    engine = Engine(config.kafka, settings, attach=True)
    engine.scale(args.hosts, args.routers)
    owners = engine.owners()
    if args.json:
        print_json(
            {
                "engine": name,
                "hosts": len(engine.hosts),
                "routers": len(engine.routers),
                "owners": [msgspec.to_builtins(o) for o in owners],
            }
        )
        return 0
    print(f"engine {name}: {len(engine.hosts)} hosts, {len(engine.routers)} routers")
    by_host: dict[str, list[int]] = {}
    for owner in owners:
        by_host.setdefault(owner.host or "(none)", []).append(owner.partition)
    for host, partitions in sorted(by_host.items()):
        print(f"  {host}: partitions {', '.join(map(str, partitions))}")
    return 0
