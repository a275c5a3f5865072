//! Data keys, sealed fields, and the audit chain key.

use std::fmt;

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use hmac::{Hmac, Mac};
use secrecy::{SecretSlice, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{CryptoError, FORMAT_VERSION, KEY_LEN, fill_random};

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Bytes a sealed field adds to its plaintext: format byte, nonce and tag.
pub const SEALED_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Where a sealed value lives. Every part goes into the associated data, so a ciphertext only
/// opens in the exact place it was sealed for.
#[derive(Debug, Clone, Copy)]
pub struct FieldContext<'a> {
    /// The kind of record, e.g. `credential` or `config_var`.
    pub kind: &'a str,
    /// The record's id.
    pub record_id: &'a str,
    /// The owning organization; empty for global records.
    pub org: &'a str,
    /// The field's name, e.g. `openai/api_key`.
    pub field: &'a str,
    /// Public data the value must stay paired with (a credential's base URL and other fields),
    /// so that changing it in the database makes the value fail to open. Empty when none.
    pub bound: &'a [u8],
}

impl FieldContext<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(
            64 + self.kind.len()
                + self.record_id.len()
                + self.org.len()
                + self.field.len()
                + self.bound.len(),
        );
        aad.extend_from_slice(b"keyward-field");
        aad.push(FORMAT_VERSION);
        for part in [self.kind, self.record_id, self.org, self.field] {
            push_field(&mut aad, part.as_bytes());
        }
        push_field(&mut aad, self.bound);
        aad
    }
}

/// Appends a length-prefixed field, so that concatenations cannot collide.
pub(crate) fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u64).to_be_bytes());
    out.extend_from_slice(field);
}

/// A per-record 256-bit data key (DEK). Zeroized on drop; never printed.
pub struct DataKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    cipher: Aes256GcmSiv,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(***)")
    }
}

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(bytes.as_mut())?;
        Ok(Self::from_bytes(&bytes))
    }

    pub(crate) fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: Aes256GcmSiv::new(bytes.into()),
            bytes: Zeroizing::new(*bytes),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// Seals `plaintext` for the place `ctx` describes.
    pub fn seal(&self, ctx: &FieldContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let aad = ctx.aad();
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a value sealed by [`DataKey::seal`] for the same place.
    pub fn open(
        &self,
        ctx: &FieldContext<'_>,
        sealed: &[u8],
    ) -> Result<SecretSlice<u8>, CryptoError> {
        let (&version, rest) = sealed.split_first().ok_or(CryptoError::Malformed)?;
        if version != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
        let aad = ctx.aad();
        let pt = Zeroizing::new(
            self.cipher
                .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
                .map_err(|_| CryptoError::Decrypt)?,
        );
        // The decrypted buffer has spare capacity (it held the tag), and turning it into a boxed
        // slice could reallocate and leave a copy behind. Copy into an exact-size buffer and let
        // `Zeroizing` wipe the original.
        Ok(SecretSlice::from(pt.to_vec()))
    }

    /// Opens a sealed UTF-8 value.
    pub fn open_string(
        &self,
        ctx: &FieldContext<'_>,
        sealed: &[u8],
    ) -> Result<SecretString, CryptoError> {
        use secrecy::ExposeSecret as _;
        let bytes = self.open(ctx, sealed)?;
        // Copy into a String we own; `bytes` is zeroized when it drops at the end of scope.
        let text = std::str::from_utf8(bytes.expose_secret()).map_err(|_| CryptoError::NotUtf8)?;
        Ok(SecretString::from(text))
    }
}

/// The key that chains audit events with HMAC-SHA-256. It is random, stored wrapped under the
/// master key like a data key, and so survives master-key rotations.
pub struct ChainKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey(***)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl ChainKey {
    /// The chain key held by a data key (so it can be wrapped and stored like one).
    pub fn from_data_key(dek: &DataKey) -> Self {
        Self {
            bytes: Zeroizing::new(*dek.bytes),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; a 32-byte key cannot be refused.
        <HmacSha256 as hmac::KeyInit>::new_from_slice(self.bytes.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// The link of an event: HMAC(prev_link || payload).
    pub fn link(&self, prev: &[u8], payload: &[u8]) -> [u8; 32] {
        let mut mac = self.mac();
        push_mac(&mut mac, prev);
        push_mac(&mut mac, payload);
        mac.finalize().into_bytes().into()
    }

    /// Checks a link in constant time.
    pub fn verify(&self, prev: &[u8], payload: &[u8], link: &[u8]) -> bool {
        let mut mac = self.mac();
        push_mac(&mut mac, prev);
        push_mac(&mut mac, payload);
        mac.verify_slice(link).is_ok()
    }
}

fn push_mac(mac: &mut HmacSha256, field: &[u8]) {
    mac.update(&(field.len() as u64).to_be_bytes());
    mac.update(field);
}
