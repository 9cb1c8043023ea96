-- A write's own deadline, checked by the database as the write commits. A replica answers a write
-- the database has not confirmed by its deadline 503, "may or may not have been made"; a statement
-- held up on the network then still arrived, and committed, after that answer, and so after a
-- write the client made next: a DELETE answered 204 by another replica was undone by the PUT
-- answered 503 before it, and the image admitted again. ImageSql sets `imagelist.write_deadline`
-- for its write's transaction: the database's own clock (milliseconds since the epoch) as the
-- replica estimates it, a little before its answer. Checked at commit (a constraint trigger,
-- deferred), not as each row is written: the network could hold back the message that commits a
-- statement already run. Rows written without the setting (plain SQL, a replica of an older
-- version) queue no check. The SQLSTATE is imagelist's own (IL001): the database is not
-- unavailable. A commit that then waits on something else (a synchronous standby) is not fenced.
CREATE FUNCTION images_write_in_time() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF extract(epoch FROM clock_timestamp()) * 1000 > current_setting('imagelist.write_deadline')::float8 THEN
    RAISE EXCEPTION 'the write reached the database after its deadline; it was not made' USING ERRCODE = 'IL001';
  END IF;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER images_write_in_time AFTER INSERT OR UPDATE OR DELETE ON images
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (current_setting('imagelist.write_deadline', true) <> '')
  EXECUTE FUNCTION images_write_in_time();
