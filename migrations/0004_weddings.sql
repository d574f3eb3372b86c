-- Weddings registered ahead (`POST /v1/weddings`): pre-scaling plans for them (SPEC §6) and
-- photo processing runs a wedding's photos first on its day (SPEC §5.2).
CREATE TABLE weddings (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id           text        NOT NULL,
    name             text        NOT NULL DEFAULT '',
    -- The wedding's local date, start time and IANA zone as registered; `starts_at` is the same
    -- instant in UTC, computed by the application when the row is written.
    local_date       date        NOT NULL,
    local_start      time        NOT NULL,
    timezone         text        NOT NULL,
    starts_at        timestamptz NOT NULL,
    expected_guests  integer     NOT NULL DEFAULT 0 CHECK (expected_guests >= 0),
    expected_photos  integer     NOT NULL DEFAULT 0 CHECK (expected_photos >= 0),
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX weddings_starts_at_idx ON weddings (starts_at);
CREATE INDEX weddings_org_idx ON weddings (org_id, starts_at);
