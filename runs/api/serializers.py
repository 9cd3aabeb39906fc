"""Run serializers. Launch validation is runs.config.validate_launch."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from runs.choices import ChatTemplate, RunMethod, RunMode
from runs.config import FIELDS
from runs.models import Run, RunLog


def _number_field(name: str) -> serializers.Field[Any, Any, Any, Any]:
    bound = FIELDS[name]
    if bound.kind is int:
        return serializers.IntegerField(
            required=False, min_value=int(bound.low), max_value=int(bound.high), help_text=bound.help
        )
    return serializers.FloatField(required=False, min_value=bound.low, max_value=bound.high, help_text=bound.help)


class RunLaunchSerializer(serializers.Serializer[Any]):
    """Documents the launch body; validate_launch enforces it (shared with the form and command)."""

    dataset = serializers.CharField(help_text="dataset key, e.g. reasoning@v1")
    base_model = serializers.CharField(required=False, default="tiny", help_text="tiny, small or local:<folder>")
    method = serializers.ChoiceField(choices=RunMethod.choices, required=False)
    mode = serializers.ChoiceField(choices=RunMode.choices, required=False)
    chat_template = serializers.ChoiceField(choices=ChatTemplate.choices, required=False)
    lora_rank = _number_field("lora_rank")
    lora_alpha = _number_field("lora_alpha")
    learning_rate = _number_field("learning_rate")
    max_steps = _number_field("max_steps")
    batch_size = _number_field("batch_size")
    max_seq_length = _number_field("max_seq_length")
    warmup_steps = _number_field("warmup_steps")
    weight_decay = _number_field("weight_decay")
    seed = _number_field("seed")
    eval_every_steps = _number_field("eval_every_steps")
    checkpoint_every_steps = _number_field("checkpoint_every_steps")
    timeout_seconds = _number_field("timeout_seconds")


class RunListSerializer(serializers.ModelSerializer[Run]):
    dataset = serializers.CharField(source="dataset.key", read_only=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "dataset",
            "base_model",
            "method",
            "mode",
            "status",
            "attempt",
            "max_steps",
            "created_at",
            "started_at",
            "finished_at",
        ]


class RunDetailSerializer(serializers.ModelSerializer[Run]):
    dataset = serializers.CharField(source="dataset.key", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)  # null until the run has started
    config = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "dataset",
            "status",
            "mode",
            "config",
            "created_by",
            "retry_of",
            "celery_task_id",
            "worker_host",
            "attempt",
            "heartbeat_at",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "exit_code",
            "error",
            "summary",
            "stdout_tail",
            "stderr_tail",
            "output_dir",
        ]

    def get_config(self, obj: Run) -> dict[str, Any]:
        return obj.config()


class RunLogSerializer(serializers.ModelSerializer[RunLog]):
    class Meta:
        model = RunLog
        fields = ["seq", "stream", "text", "created_at"]


class RunLogPageSerializer(serializers.Serializer[dict[str, Any]]):
    """GET /api/runs/{id}/logs: the run's status and the lines after `since_seq`."""

    status = serializers.CharField()
    last_seq = serializers.IntegerField(help_text="pass it back as `since_seq` to get only newer lines")
    lines = RunLogSerializer(many=True)
