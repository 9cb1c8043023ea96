-- A write's own deadline, checked by the database as it makes the write (ImageSql: each row a
-- write inserts, updates or deletes calls this in its RETURNING). A replica answers a write the
-- database has not confirmed by its deadline 503, "may or may not have been made"; a statement
-- held up on the network then still arrived, and committed, after that answer, and so after a
-- write the client made next: a DELETE answered 204 by another replica was undone by the PUT
-- answered 503 before it, and the image admitted again. `deadline_ms` is the database's own clock
-- (milliseconds since the epoch) as the replica estimates it, a little before its answer; NULL
-- checks nothing. The SQLSTATE is imagelist's own (IL001): the database is not unavailable.
CREATE FUNCTION images_write_in_time(deadline_ms float8) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF deadline_ms IS NOT NULL AND extract(epoch FROM clock_timestamp()) * 1000 > deadline_ms THEN
    RAISE EXCEPTION 'the write reached the database after its deadline; it was not made' USING ERRCODE = 'IL001';
  END IF;
  RETURN true;
END $$;
