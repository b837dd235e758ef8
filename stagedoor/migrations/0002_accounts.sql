-- Accounts: users with case-insensitively unique emails, argon2id hashes, roles;
-- rotating refresh tokens (stored hashed, grouped in families); registered API clients.
CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    password_hash text NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    roles         text[] NOT NULL DEFAULT ARRAY['customer']::text[],
    blocked       boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz,
    CONSTRAINT users_roles_known CHECK (roles <@ ARRAY['customer', 'organizer', 'admin']::text[]),
    CONSTRAINT users_roles_present CHECK (cardinality(roles) >= 1)
);

CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

-- Refresh tokens rotate on every use. A token is stored as sha256(token) only. Presenting
-- a token that was already used (or revoked) revokes its whole family: the thief and the
-- victim both have to sign in again.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash  bytea NOT NULL UNIQUE,
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_live ON refresh_tokens (user_id) WHERE revoked_at IS NULL AND used_at IS NULL;

-- API clients (client_credentials grant): organizers' and SREs' automation. The secret is
-- high-entropy and random, so sha256 is enough (no password hashing needed). An owned
-- client acts for its owner (owner's roles, narrowed by scopes).
CREATE TABLE api_clients (
    client_id    text PRIMARY KEY CHECK (length(client_id) BETWEEN 8 AND 64),
    secret_hash  bytea NOT NULL,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    owner_id     uuid REFERENCES users (id) ON DELETE CASCADE,
    scopes       text[] NOT NULL DEFAULT ARRAY[]::text[],
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE INDEX api_clients_owner ON api_clients (owner_id);
