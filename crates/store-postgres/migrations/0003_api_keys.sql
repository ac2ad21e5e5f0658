-- API keys, shared by every server: the SHA-256 of each secret, never the secret.
CREATE TABLE api_keys (
    name            text COLLATE "C" PRIMARY KEY,
    role            text NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    face_sets       text[],
    sha256          bytea NOT NULL UNIQUE CHECK (length(sha256) = 32),
    created_unix_ms bigint NOT NULL
);
