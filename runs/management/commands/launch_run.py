"""Launch a run from the command line, optionally waiting for it to finish."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.choices import RunStatus
from runs.launching import launch_run
from runs.models import RunLog
from runs.validation import LaunchInvalid, validate_launch
from tunixrt.roles import Action, command_user


class Command(BaseCommand):
    help = (
        "Launch a Tunix run on DATASET (name@vN): --preset tiny|small|local:<folder>, "
        "--objective sft|dpo|orpo|grpo, --reward NAME=WEIGHT and --prompt-eval-set NAME (GRPO), "
        "--parent RUN_ID (start from a completed run's final model), "
        "--set name=value for any hyperparameter (learning_rate, max_steps, batch_size, method, mode, beta, ...). "
        "With --wait, print its log until it ends and exit non-zero unless it completed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", required=True)
        parser.add_argument(
            "--base-model", "--preset", dest="preset", default="tiny", help="tiny, small or local:<folder>"
        )
        parser.add_argument("--objective", help="sft (default), dpo, orpo or grpo")
        parser.add_argument("--parent", metavar="RUN_ID", help="start from this completed run's final model")
        parser.add_argument(
            "--reference-run", metavar="RUN_ID", help="DPO: this completed run's final model is the reference"
        )
        parser.add_argument(
            "--reward",
            action="append",
            default=[],
            metavar="NAME=WEIGHT",
            dest="rewards",
            help="GRPO: a reward function and its weight (correctness, format, length); repeat for each",
        )
        parser.add_argument(
            "--prompt-eval-set", metavar="NAME", help="GRPO: train on this eval set's prompts instead of the dataset's"
        )
        parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="overrides")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument(
            "--user", metavar="USERNAME", help="act for this user (owner, role checked); default: the operator"
        )
        parser.add_argument("--poll", type=float, default=1.0, help=argparse_hidden())

    def handle(self, *args: Any, **options: Any) -> None:
        user = command_user(options["user"], Action.CREATE)
        data: dict[str, Any] = {"dataset": options["dataset"]}
        if options["parent"] is None or options["preset"] != "tiny":
            data["base_model"] = options["preset"]  # a child run keeps its parent's base model
        for name in ("objective", "parent", "reference_run", "prompt_eval_set"):
            if options[name] is not None:
                data[name] = options[name]
        for item in options["overrides"]:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise CommandError(f"--set expects NAME=VALUE, got {item!r}.")
            data[name.strip()] = value.strip()
        if options["rewards"]:
            data["rewards"] = reward_spec(options["rewards"])
        try:
            run = launch_run(validate_launch(data), user)
        except LaunchInvalid as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())) from None
        parts = [run.mode, *([run.objective] if run.objective != "sft" else []), run.base_model]
        if run.parent_id:
            parts.append(f"from run {run.parent_id}")
        self.stdout.write(f"Run {run.pk} queued ({', '.join(parts)}, {run.dataset.key}).")
        if run.awaiting_broker:
            self.stderr.write(run.queued_notice)
        if not options["wait"]:
            return
        seq = -1
        while True:
            for line in RunLog.objects.filter(run=run, seq__gt=seq).order_by("seq"):
                self.stdout.write(f"  {line.text}")
                seq = line.seq
            run.refresh_from_db()
            if run.is_terminal:
                break
            time.sleep(options["poll"])
        self.stdout.write(f"Run {run.pk}: {run.status}" + (f" ({run.error})" if run.error else ""))
        if run.status != RunStatus.COMPLETED:
            raise CommandError(f"Run {run.pk} ended {run.status}.")
        summary = run.summary
        if "final_train_loss" in summary:
            self.stdout.write(
                f"loss {summary.get('first_train_loss'):.4f} → {summary.get('final_train_loss'):.4f} "
                f"in {summary.get('steps_done')} steps"
            )


def reward_spec(items: list[str]) -> dict[str, Any]:
    """`--reward correctness=1 --reward format=0.5` as {name: weight}; validate_launch checks the names."""
    spec: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--reward expects NAME=WEIGHT, got {item!r}.")
        try:
            spec[name.strip()] = float(value)
        except ValueError:
            raise CommandError(f"rewards.{name.strip()}: The weight must be a number, got {value!r}.") from None
    return spec


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS
