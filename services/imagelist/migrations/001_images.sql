CREATE TABLE images (
  id         text        PRIMARY KEY CHECK (id ~ '^[a-f0-9]{64}$'),
  name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  tags       text[]      NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- the name of the token that made the write, when tokens are enabled
  created_by text,
  updated_by text
);

-- GET /images?name= is an exact match; the id breaks ties so pages are stable.
CREATE INDEX images_name_idx ON images (name, updated_at DESC, id DESC);
CREATE INDEX images_updated_at_idx ON images (updated_at DESC, id DESC);
CREATE INDEX images_created_at_idx ON images (created_at DESC, id DESC);
