"""Per-project task counts kept by statement-level triggers (transition tables), so a whole
COPY of 1M rows costs one grouped INSERT, and a lease or submit that moves a task between states
appends two delta rows. See annotations.models.TaskCount."""
import django.db.models.deletion
from django.db import migrations, models

CREATE = """
CREATE OR REPLACE FUNCTION annotations_taskcount_inserted() RETURNS trigger AS $$
BEGIN
    INSERT INTO annotations_taskcount (project_id, kind, state, complete, n)
    SELECT project_id, kind, state, completed_at IS NOT NULL, count(*) FROM new_rows GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION annotations_taskcount_deleted() RETURNS trigger AS $$
BEGIN
    INSERT INTO annotations_taskcount (project_id, kind, state, complete, n)
    SELECT project_id, kind, state, completed_at IS NOT NULL, -count(*) FROM old_rows GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION annotations_taskcount_updated() RETURNS trigger AS $$
BEGIN
    -- Only rows whose (project, kind, state, complete) changed; most updates only move counters.
    INSERT INTO annotations_taskcount (project_id, kind, state, complete, n)
    SELECT project_id, kind, state, complete, sum(d) FROM (
        SELECT nr.project_id, nr.kind, nr.state, nr.completed_at IS NOT NULL AS complete, 1 AS d,
               o.project_id AS op, o.kind AS ok, o.state AS os, o.completed_at IS NOT NULL AS oc
        FROM new_rows nr JOIN old_rows o ON o.id = nr.id
        UNION ALL
        SELECT o.project_id, o.kind, o.state, o.completed_at IS NOT NULL, -1,
               nr.project_id, nr.kind, nr.state, nr.completed_at IS NOT NULL
        FROM new_rows nr JOIN old_rows o ON o.id = nr.id
    ) moved
    WHERE (project_id, kind, state, complete) IS DISTINCT FROM (op, ok, os, oc)
    GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER annotations_taskcount_inserted AFTER INSERT ON annotations_task
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION annotations_taskcount_inserted();
CREATE TRIGGER annotations_taskcount_deleted AFTER DELETE ON annotations_task
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION annotations_taskcount_deleted();
CREATE TRIGGER annotations_taskcount_updated AFTER UPDATE ON annotations_task
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION annotations_taskcount_updated();

-- The tasks that exist already; the triggers above hold the table's write lock until commit.
INSERT INTO annotations_taskcount (project_id, kind, state, complete, n)
SELECT project_id, kind, state, completed_at IS NOT NULL, count(*) FROM annotations_task GROUP BY 1, 2, 3, 4;
"""
DROP = """
DROP TRIGGER IF EXISTS annotations_taskcount_inserted ON annotations_task;
DROP TRIGGER IF EXISTS annotations_taskcount_deleted ON annotations_task;
DROP TRIGGER IF EXISTS annotations_taskcount_updated ON annotations_task;
DROP FUNCTION IF EXISTS annotations_taskcount_inserted();
DROP FUNCTION IF EXISTS annotations_taskcount_deleted();
DROP FUNCTION IF EXISTS annotations_taskcount_updated();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):

    dependencies = [
        ('annotations', '0007_quality_control'),
    ]

    operations = [
        migrations.CreateModel(
            name='TaskCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(max_length=16)),
                ('state', models.CharField(max_length=8)),
                ('complete', models.BooleanField(default=False, help_text='Counts tasks with completed_at set.')),
                ('n', models.BigIntegerField()),
                ('project', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='annotations.project')),
            ],
            options={
                'indexes': [models.Index(fields=['project'], name='taskcount_project_idx')],
            },
        ),
        migrations.RunPython(create, drop),
    ]
