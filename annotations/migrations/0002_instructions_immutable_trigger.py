"""A published instruction version is immutable even for raw SQL: PostgreSQL refuses the UPDATE."""
from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION annotations_instructions_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'published instruction versions are immutable (version %% of project %%)',
        OLD.number, OLD.project_id USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS annotations_instructions_immutable ON annotations_instructionversion;
CREATE TRIGGER annotations_instructions_immutable BEFORE UPDATE ON annotations_instructionversion
    FOR EACH ROW EXECUTE FUNCTION annotations_instructions_immutable();
"""
DROP = """
DROP TRIGGER IF EXISTS annotations_instructions_immutable ON annotations_instructionversion;
DROP FUNCTION IF EXISTS annotations_instructions_immutable();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("annotations", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
