"""Migration 0006 records each existing dataset name's highest version, so numbering goes on from there."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from traces.models import DatasetName
from traces.tests.datasets_support import build, make_trace

BEFORE = [("traces", "0005_search_index_backlog")]
AFTER = [("traces", "0006_dataset_names")]


@pytest.mark.django_db(transaction=True)
def test_existing_names_continue_from_their_highest_version():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old_apps = executor.loader.project_state(BEFORE).apps
    Dataset = old_apps.get_model("traces", "Dataset")
    for name, version in [("arith", 1), ("arith", 4), ("gsm", 2)]:
        Dataset.objects.create(name=name, version=version, spec={}, stats={})

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)

    assert dict(DatasetName.objects.values_list("name", "last_version")) == {"arith": 4, "gsm": 2}
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())  # the rest of the way, for today's models
    make_trace()
    assert build("arith").key == "arith@v5"
