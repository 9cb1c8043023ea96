-- Names compare byte by byte ("C"), whatever the database's collation: the in-memory index orders
-- them by code point (names are printable ASCII, migration 003), so a list sorted by name, and a
-- cursor into it, is the same whether the database or the index answers it. With a language's
-- collation (en_US), pages answered from memory during an outage skipped and repeated images.
-- Ids are lowercase hex, which every collation orders alike. Rebuilds images_name_idx; the table
-- is not rewritten.
ALTER TABLE images ALTER COLUMN name TYPE text COLLATE "C";
