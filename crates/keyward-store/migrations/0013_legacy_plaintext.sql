-- Rows an external migration wrote with their secret in plain text (before Keyward sealed
-- them): a credential with kid = '', wrapped_dek = '' (empty bytes), sealed_secret NULL and the
-- key in plaintext_secret; a variable with sensitive = 1, kid, wrapped_dek and sealed_value
-- NULL and its value in value. Keyward reads them (status legacy_plaintext), warns about them,
-- and seals them on their next update or with `keyward reencrypt`; it never writes one.
ALTER TABLE credentials ADD COLUMN plaintext_secret TEXT;
