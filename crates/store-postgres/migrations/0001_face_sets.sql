-- Face sets, their faces, and the change log every server follows.

-- What the database holds: model_id and dims, written by the first server.
CREATE TABLE facerec_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE face_sets (
    name text COLLATE "C" PRIMARY KEY
);

-- One row per enrolled face; tokens and set names sort byte-wise.
CREATE TABLE faces (
    set_name        text COLLATE "C" NOT NULL REFERENCES face_sets (name) ON DELETE CASCADE,
    token           text COLLATE "C" NOT NULL,
    name            text NOT NULL,
    embedding       bytea NOT NULL,  -- dims x f32, little-endian
    model_id        text NOT NULL,
    created_unix_ms bigint NOT NULL,
    PRIMARY KEY (set_name, token)
);

-- One row per change, numbered in commit order (writers take an advisory lock before they
-- take a number); token NULL: the whole set was deleted.
CREATE TABLE face_changes (
    seq      bigserial PRIMARY KEY,
    set_name text COLLATE "C" NOT NULL,
    token    text COLLATE "C",
    at       timestamptz NOT NULL DEFAULT now()
);

-- Changes up to this number have been deleted from the log: a server that has not seen
-- them reloads everything.
CREATE TABLE facerec_log (
    pruned_through bigint NOT NULL
);
INSERT INTO facerec_log (pruned_through) VALUES (0);
