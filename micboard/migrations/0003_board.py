"""Channel.board_position: an explicit, persistent tile number on the "All" board.

Existing channels are numbered in the order the board showed them until now (active receivers by
name, then channel number), so no tile changes its number with this upgrade; channels of inactive
receivers follow.
"""

import django.core.validators
from django.db import migrations, models


def number_existing_channels(apps, schema_editor):
    Channel = apps.get_model("micboard", "Channel")
    ordered = [
        *Channel.objects.filter(receiver__active=True).order_by("receiver__name", "number"),
        *Channel.objects.filter(receiver__active=False).order_by("receiver__name", "number"),
    ]
    for position, channel in enumerate(ordered, start=1):
        channel.board_position = position
    Channel.objects.bulk_update(ordered, ["board_position"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("micboard", "0002_channel_status_battery_unknown"),
    ]

    operations = [
        migrations.AddField(
            model_name="channel",
            name="board_position",
            field=models.PositiveIntegerField(null=True, verbose_name="tile number"),
        ),
        migrations.RunPython(number_existing_channels, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="channel",
            name="board_position",
            field=models.PositiveIntegerField(
                help_text='Its tile number on the "All" board. New channels go last; a number stays with its channel.',
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(9999),
                ],
                verbose_name="tile number",
            ),
        ),
        migrations.AddConstraint(
            model_name="channel",
            constraint=models.UniqueConstraint(fields=("board_position",), name="unique_board_position"),
        ),
    ]
