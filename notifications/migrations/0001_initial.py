"""The notification models as they were in the inventory app (inventory 0009, 0012): their tables are kept,
only Django's state moves here (inventory 0013 drops them from its own state)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('inventory', '0012_upgrade_readiness'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
                migrations.CreateModel(
                    name='Channel',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.SlugField(max_length=63)),
                        ('kind', models.CharField(choices=[('webhook', 'webhook (signed JSON)'), ('slack', 'Slack-compatible incoming webhook'), ('email', 'email')], max_length=8)),
                        ('ciphertext', models.TextField(blank=True)),
                        ('target_host', models.CharField(blank=True, help_text='What pages show of the URL: its host', max_length=255)),
                        ('recipients', models.JSONField(blank=True, default=list, help_text='Email addresses')),
                        ('enabled', models.BooleanField(default=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('team', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='channels', to='inventory.team')),
                    ],
                    options={
                        'db_table': 'inventory_channel',
                        'ordering': ['team__name', 'name'],
                    },
                ),
                migrations.CreateModel(
                    name='AlertRule',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100)),
                        ('events', models.JSONField(default=list, help_text='Registered event keys (notifications.events)')),
                        ('environments', models.JSONField(blank=True, default=list, help_text='Only clusters of these; empty: all')),
                        ('min_severity', models.CharField(choices=[('critical', 'critical'), ('high', 'high'), ('medium', 'medium'), ('low', 'low')], default='high', max_length=16)),
                        ('hold_down', models.PositiveIntegerField(default=120, help_text='Seconds a cluster must stay in a state before it alerts or recovers')),
                        ('score_below', models.FloatField(default=80.0, help_text='group.score_low: alert under this score (0-100)')),
                        ('expiry_days', models.PositiveIntegerField(default=14, help_text='cluster.credentials_expiring: days ahead')),
                        ('enabled', models.BooleanField(default=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('team', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='alert_rules', to='inventory.team')),
                        ('channel', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='rules', to='notifications.channel')),
                    ],
                    options={
                        'db_table': 'inventory_alertrule',
                        'ordering': ['team__name', 'name'],
                    },
                ),
                migrations.CreateModel(
                    name='Delivery',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('event', models.CharField(max_length=40)),
                        ('title', models.CharField(max_length=255)),
                        ('payload', models.JSONField(default=dict)),
                        ('state', models.CharField(choices=[('pending', 'pending'), ('retrying', 'retrying'), ('sent', 'sent'), ('failed', 'failed')], default='pending', max_length=16)),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('answer', models.CharField(blank=True, max_length=255)),
                        ('is_test', models.BooleanField(default=False)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('last_attempt_at', models.DateTimeField(blank=True, null=True)),
                        ('sent_at', models.DateTimeField(blank=True, null=True)),
                        ('channel', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='notifications.channel')),
                        ('rule', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='notifications.alertrule')),
                    ],
                    options={
                        'db_table': 'inventory_delivery',
                        'ordering': ['-created_at', '-pk'],
                    },
                ),
                migrations.CreateModel(
                    name='Alert',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('key', models.CharField(help_text='The subject, e.g. cluster:12', max_length=128)),
                        ('event', models.CharField(max_length=40)),
                        ('state', models.CharField(help_text='e.g. the cluster status that fired it', max_length=64)),
                        ('subject', models.CharField(max_length=255)),
                        ('opened_at', models.DateTimeField()),
                        ('closed_at', models.DateTimeField(blank=True, null=True)),
                        ('cluster', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='inventory.cluster')),
                        ('rule', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alerts', to='notifications.alertrule')),
                    ],
                    options={
                        'db_table': 'inventory_alert',
                        'ordering': ['-opened_at'],
                        'constraints': [models.UniqueConstraint(condition=models.Q(('closed_at__isnull', True)), fields=('rule', 'key'), name='one_open_alert_per_subject')],
                    },
                ),
                migrations.AddConstraint(
                    model_name='channel',
                    constraint=models.UniqueConstraint(fields=('team', 'name'), name='one_channel_name_per_team', nulls_distinct=False),
                ),
                migrations.AddIndex(
                    model_name='delivery',
                    index=models.Index(fields=['channel', '-created_at'], name='inventory_d_channel_545b90_idx'),
                ),
                migrations.AddIndex(
                    model_name='delivery',
                    index=models.Index(fields=['state'], name='inventory_d_state_14412a_idx'),
                ),
        ], database_operations=[]),
    ]
