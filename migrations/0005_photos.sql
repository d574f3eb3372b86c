-- Photos uploaded for a wedding and their processing (SPEC §5.2, issue #4).
--
-- The original is stored once per content (key `originals/<sha256>`); a second upload of the
-- same bytes to the same wedding is recognised by (wedding_id, content_hash) and creates no row.
CREATE TABLE photos (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id          text        NOT NULL,
    wedding_id      uuid        NOT NULL REFERENCES weddings (id) ON DELETE CASCADE,
    photo_group     text,
    tag             text,
    filename        text,
    -- pending (queued) → processing → ready | failed
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    -- SHA-256 of the original, lower-case hex.
    content_hash    text        NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    original_key    text        NOT NULL,
    original_bytes  bigint      NOT NULL CHECK (original_bytes >= 0),
    -- Sniffed from the content at upload: jpeg, png or webp.
    format          text        NOT NULL,
    -- Upright dimensions, once processed.
    width           integer,
    height          integer,
    -- [{size, format, key, width, height, bytes}], largest first.
    variants        jsonb       NOT NULL DEFAULT '[]',
    error           text,
    priority        smallint    NOT NULL DEFAULT 5,
    job_id          bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz
);

CREATE UNIQUE INDEX photos_wedding_content_idx ON photos (wedding_id, content_hash);
CREATE INDEX photos_org_idx ON photos (org_id, created_at);
-- Retention of failed originals finds old failures without scanning the table.
CREATE INDEX photos_failed_idx ON photos (updated_at) WHERE status = 'failed';
