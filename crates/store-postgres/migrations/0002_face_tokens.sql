-- Temporary face tokens from /detect, with their crops, shared by every server. UNLOGGED:
-- fast, and emptied if PostgreSQL crashes (tokens may be lost, faces never).
CREATE UNLOGGED TABLE face_tokens (
    id         bigserial PRIMARY KEY,
    token      text COLLATE "C" NOT NULL UNIQUE,
    embedding  bytea NOT NULL,
    crop       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX face_tokens_created_at ON face_tokens (created_at);
