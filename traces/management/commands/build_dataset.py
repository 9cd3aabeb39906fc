"""Build the next version of a dataset from trace (or preference pair) filters or ids."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from traces.datasets.building import (
    FILTER_FIELDS,
    PAIR_FILTER_FIELDS,
    BuildInvalid,
    build_dataset,
    validate_build_spec,
)
from tunixrt.roles import Action, command_user

ALL_FILTERS = tuple(dict.fromkeys((*FILTER_FIELDS, *PAIR_FILTER_FIELDS)))


class Command(BaseCommand):
    help = (
        "Build NAME's next version (NAME@vN) from the trace filters or --trace-ids (--kind preference: "
        "the pair filters --q, --source, --created-by, --created-after/before or --pair-ids), "
        "with a strategy, limit and validation split. Runs inline (no worker needed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--description", default="")
        parser.add_argument("--strategy", choices=["latest", "random", "all"], default="latest")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--limit", type=int)
        parser.add_argument("--validation-fraction", type=float)
        parser.add_argument("--validation-seed", type=int)
        parser.add_argument("--kind", choices=["sft", "preference"], default="sft")
        parser.add_argument("--trace-ids", help="comma-separated trace ids instead of filters")
        parser.add_argument("--pair-ids", help="preference: comma-separated pair ids instead of filters")
        parser.add_argument(
            "--user", metavar="USERNAME", help="act for this user (owner, role checked); default: the operator"
        )
        for name in ALL_FILTERS:
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name)

    def handle(self, *args: Any, **options: Any) -> None:
        user = command_user(options["user"], Action.CREATE)
        data: dict[str, Any] = {
            "name": options["name"],
            "kind": options["kind"],
            "description": options["description"],
            "strategy": options["strategy"],
            "seed": options["seed"],
            "limit": options["limit"],
            "validation_fraction": options["validation_fraction"],
            "validation_seed": options["validation_seed"],
        }
        for name in ALL_FILTERS:
            data[name] = options[name]
        for field in ("trace_ids", "pair_ids"):
            if options[field]:
                try:
                    data[field] = [int(x) for x in options[field].split(",") if x.strip()]
                except ValueError:
                    flag = field.replace("_", "-")
                    raise CommandError(f"--{flag} must be comma-separated integers.") from None
        data = {k: v for k, v in data.items() if v not in (None, "")}
        try:
            # A command may take its time: build inline whatever the size.
            dataset = build_dataset(validate_build_spec(data), user, inline_limit=10**9)
        except BuildInvalid as exc:
            raise CommandError(str(exc)) from None
        stats = dataset.stats
        self.stdout.write(
            f"Built {dataset.key}: {stats['count']:,} {'pairs' if dataset.is_preference else 'traces'} "
            f"({stats['train']:,} train, {stats['validation']:,} validation), "
            f"≈{stats['tokens_estimate']:,} tokens"
        )
