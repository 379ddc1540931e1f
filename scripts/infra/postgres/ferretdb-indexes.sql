-- Expression indexes for FerretDB's tables, so the local stand-in looks documents up like MongoDB.
--
-- FerretDB 1.24 (PostgreSQL backend) pushes an equality filter such as {"_id": "x"} down as
--   WHERE _jsonb->'_id' @> '"x"'
-- but the btree indexes it creates cannot serve `@>`, so every lookup is a sequential scan and its
-- cost grows with the collection. A GIN (jsonb_path_ops) index on the same expression serves it.
-- An event trigger adds one for the fields jobstream filters on (_id, job_id, status, slot,
-- parent) to every table FerretDB creates; the block at the end covers tables that already exist. Idempotent.
-- Real MongoDB (the compose stack) needs none of this: jobstream.bootstrap creates its indexes.

CREATE OR REPLACE FUNCTION jobstream_index_ferretdb_table(schema_name text, table_name text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  field text;
BEGIN
  IF table_name LIKE '\_ferretdb\_%' THEN
    RETURN;
  END IF;
  FOREACH field IN ARRAY ARRAY['_id', 'job_id', 'status', 'slot', 'parent'] LOOP
    EXECUTE format(
      'CREATE INDEX IF NOT EXISTS %I ON %I.%I USING gin ((_jsonb -> %L) jsonb_path_ops)',
      left(table_name, 48) || '_' || trim(LEADING '_' FROM field) || '_gin',
      schema_name, table_name, field
    );
  END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION jobstream_on_create_table() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
  created record;
BEGIN
  FOR created IN
    SELECT n.nspname, c.relname
    FROM pg_event_trigger_ddl_commands() AS d
    JOIN pg_class AS c ON c.oid = d.objid
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE d.command_tag = 'CREATE TABLE' AND d.object_type = 'table'
  LOOP
    PERFORM jobstream_index_ferretdb_table(created.nspname, created.relname);
  END LOOP;
END;
$$;

DROP EVENT TRIGGER IF EXISTS jobstream_index_ferretdb_tables;
CREATE EVENT TRIGGER jobstream_index_ferretdb_tables ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE')
  EXECUTE FUNCTION jobstream_on_create_table();

DO $$
DECLARE
  existing record;
BEGIN
  FOR existing IN
    SELECT t.schemaname, t.tablename
    FROM pg_tables AS t
    JOIN pg_attribute AS a
      ON a.attrelid = format('%I.%I', t.schemaname, t.tablename)::regclass AND a.attname = '_jsonb'
    WHERE t.schemaname NOT IN ('pg_catalog', 'information_schema')
  LOOP
    PERFORM jobstream_index_ferretdb_table(existing.schemaname, existing.tablename);
  END LOOP;
END;
$$;
