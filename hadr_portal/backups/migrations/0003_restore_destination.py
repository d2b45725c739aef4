"""Where a restore writes is its destination: `target`, `target_cluster` and `target_database` are renamed
`destination`, `destination_cluster` and `destination_database` ("target" is only what an operation locks).
The columns are renamed in place; the choices keep their values, so every row reads as before."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0002_restores"),
    ]

    operations = [
        migrations.RenameField(model_name="restore", old_name="target", new_name="destination"),
        migrations.RenameField(model_name="restore", old_name="target_cluster", new_name="destination_cluster"),
        migrations.RenameField(model_name="restore", old_name="target_database", new_name="destination_database"),
    ]
