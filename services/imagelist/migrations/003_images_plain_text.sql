-- Names and tags are printable ASCII without '"' or '\' (the reference grammar allows nothing
-- else), so their JSON form is the text itself; the in-memory index relies on that.
ALTER TABLE images
  ADD CONSTRAINT images_name_plain CHECK (name ~ '^[!#-\[\]-~]+$'),
  ADD CONSTRAINT images_tags_plain CHECK (array_to_string(tags, ',') ~ '^[!#-\[\]-~]*$');
