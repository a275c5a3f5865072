//! Envelope encryption for Keyward: master keys, data keys, sealed fields and the audit chain key.
//!
//! This crate does no I/O and no async work; it only turns bytes into other bytes. Everything
//! secret lives in [`secrecy`] or [`zeroize`] types and is wiped when dropped.
//!
//! The layout follows DESIGN §3:
//!
//! - [`Keyring`]: the configured master keys (KEKs), each with a [`KeyId`]; the first is primary.
//! - [`DataKey`]: one random 256-bit key per record. [`DataKey::seal`] encrypts one field with
//!   AES-256-GCM-SIV, binding it through associated data to its [`FieldContext`] (record kind,
//!   record id, organization, field name), so a ciphertext moved elsewhere fails to open.
//! - [`Keyring::wrap`] seals a data key under the primary master key; the wrapped form records
//!   the format version and the key id, and is bound to its record id.
//! - [`ChainKey`]: the HMAC key that chains audit events.
//!
//! Envelope byte layouts (all versions start with a format byte, so a later format can coexist):
//!
//! ```text
//! wrapped data key : 0x01 | kid_len u8 | kid | nonce[12] | AES-GCM-SIV(dek[32]) + tag[16]
//! sealed field     : 0x01 | nonce[12] | AES-GCM-SIV(plaintext) + tag[16]
//! ```

mod envelope;
mod keyring;

pub use envelope::{ChainKey, DataKey, FieldContext, SEALED_OVERHEAD};
pub use keyring::{KeyId, KeyMaterial, Keyring, MasterKey, generate_master_key_base64};

/// Format version written in front of every envelope this build produces.
pub const FORMAT_VERSION: u8 = 1;

/// Length in bytes of every key this crate uses (AES-256, HMAC-SHA-256 chain key).
pub const KEY_LEN: usize = 32;

/// Everything that can go wrong in this crate. No variant ever carries secret material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The envelope starts with a format version this build does not know.
    #[error("unsupported envelope format version {0}")]
    UnsupportedVersion(u8),
    /// The envelope is shorter than its header says or otherwise not well formed.
    #[error("malformed envelope")]
    Malformed,
    /// The data key is wrapped under a master key id that is not configured.
    #[error("master key '{0}' is not configured")]
    UnknownKeyId(String),
    /// Authentication failed: wrong key, tampered bytes, or a ciphertext moved to another
    /// record, organization or field.
    #[error("decryption failed: wrong key, tampered data, or data moved from another record")]
    Decrypt,
    /// The decrypted value was expected to be UTF-8 text and was not.
    #[error("decrypted value is not valid UTF-8")]
    NotUtf8,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A master-key configuration value was refused. The message names the variable and never
    /// contains key material.
    #[error("{0}")]
    Config(String),
}

/// Fills `buf` with random bytes from the operating system.
pub fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|_| CryptoError::Random)
}
