-- Master keys wrapped by a KMS or HSM (KEYWARD_KMS): the KMS's ciphertext of each key, never
-- the key. Unwrapped once at start. The primary is the row promoted last. A retired key
-- (`keyward master-key retire`) is kept, still unwrapped at start, so that whatever a server
-- started before the change wraps under it stays readable; it is no longer listed.
CREATE TABLE master_keys (
    kid TEXT PRIMARY KEY,
    kms TEXT NOT NULL,
    kms_key TEXT NOT NULL,
    key_version TEXT,
    wrapped BYTEA NOT NULL,
    primary_since BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    rewrapped_at BIGINT,
    retired_at BIGINT
);
