"""Where an alert channel sends is its address: `target` and `target_env` are renamed `address` and
`address_env` ("target" is only what an operation locks). The columns are renamed in place. The catalog file
keeps its keys `target` and `target_env`."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("status", "0006_check_node_and_policy_keys"),
    ]

    operations = [
        migrations.RenameField(model_name="alertchannel", old_name="target", new_name="address"),
        migrations.RenameField(model_name="alertchannel", old_name="target_env", new_name="address_env"),
    ]
