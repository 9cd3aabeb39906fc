"""Dataset version numbers come from a per-name counter, so a deleted version's number is never reused."""

from django.db import migrations, models
from django.db.models import Max


def record_existing_names(apps, schema_editor):
    Dataset = apps.get_model("traces", "Dataset")
    DatasetName = apps.get_model("traces", "DatasetName")
    rows = Dataset.objects.values("name").annotate(last=Max("version")).order_by("name")
    DatasetName.objects.bulk_create(
        [DatasetName(name=row["name"], last_version=row["last"]) for row in rows], batch_size=1000
    )


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0005_search_index_backlog"),
    ]

    operations = [
        migrations.CreateModel(
            name="DatasetName",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.SlugField(max_length=100, unique=True)),
                ("last_version", models.PositiveIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(record_existing_names, migrations.RunPython.noop),
    ]
