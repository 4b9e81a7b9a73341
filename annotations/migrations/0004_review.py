import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0003_datasetsnapshot"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Review",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("decision", models.CharField(choices=[("accept", "Accept"), ("reject", "Reject"), ("fix", "Fix")],
                                              max_length=8)),
                ("reason", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("fixed_reply", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                                  related_name="+", to="annotations.candidatereply")),
                ("reviewer", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="reviews",
                                               to=settings.AUTH_USER_MODEL)),
                ("submission", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="reviews",
                                                 to="annotations.submission")),
            ],
            options={
                "ordering": ["-id"],
                "constraints": [models.CheckConstraint(
                    condition=models.Q(models.Q(("decision", "reject"), _negated=True),
                                       models.Q(("reason", ""), _negated=True), _connector="OR"),
                    name="review_reject_has_reason")],
            },
        ),
    ]
