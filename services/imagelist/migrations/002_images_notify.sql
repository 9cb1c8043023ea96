-- Every change to the allowlist is announced on channel images_changed with the id that
-- changed ('*' after a TRUNCATE), so each replica's in-memory index follows within milliseconds.
CREATE FUNCTION images_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('images_changed', OLD.id);
  ELSE
    PERFORM pg_notify('images_changed', NEW.id);
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION images_notify_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('images_changed', '*');
  RETURN NULL;
END $$;

CREATE TRIGGER images_notify_row AFTER INSERT OR UPDATE OR DELETE ON images
  FOR EACH ROW EXECUTE FUNCTION images_notify_row();
CREATE TRIGGER images_notify_truncate AFTER TRUNCATE ON images
  FOR EACH STATEMENT EXECUTE FUNCTION images_notify_truncate();
