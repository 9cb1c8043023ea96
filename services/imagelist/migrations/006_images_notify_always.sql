-- The notify triggers fire in every session, also one with session_replication_role = replica: a
-- logical replication apply worker (a subscriber being switched to), or an operator skipping
-- triggers on purpose. Enabled only on origin (the default), a DELETE made so was never
-- announced, and every replica kept admitting the image from memory until it restarted.
ALTER TABLE images ENABLE ALWAYS TRIGGER images_notify_row;
ALTER TABLE images ENABLE ALWAYS TRIGGER images_notify_truncate;
