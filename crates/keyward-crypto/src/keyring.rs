//! Master keys (KEKs) and the keyring that holds them.

use std::fmt;

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::envelope::DataKey;
use crate::{CryptoError, FORMAT_VERSION, KEY_LEN, fill_random};

const NONCE_LEN: usize = 12;

/// The id of a master key: 1 to 32 ASCII letters, digits, `_`, `-` or `.`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Parses a key id, refusing anything outside the allowed alphabet or length.
    pub fn new(s: &str) -> Result<Self, CryptoError> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            // The text is not echoed: a key pasted in the wrong place would be printed.
            Err(CryptoError::Config(
                "invalid master key id: use 1 to 32 ASCII letters, digits, '_', '-' or '.' \
                 (entries are KID:BASE64)"
                    .into(),
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One 256-bit master key with its id. The key bytes are zeroized on drop and never printed.
pub struct MasterKey {
    kid: KeyId,
    cipher: Aes256GcmSiv,
    /// SHA-256 of a domain label and the key: lets [`Keyring::appears_in`] recognise the key
    /// in a text without keeping its bytes.
    fingerprint: [u8; 32],
}

/// The fingerprint of 32 key bytes (not the key, and not usable as one).
fn fingerprint(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"keyward master key fingerprint\0");
    h.update(bytes);
    h.finalize().into()
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Builds a master key from raw bytes.
    pub fn from_bytes(kid: KeyId, bytes: &[u8; KEY_LEN]) -> Self {
        let cipher = Aes256GcmSiv::new(bytes.into());
        Self {
            kid,
            cipher,
            fingerprint: fingerprint(bytes),
        }
    }

    /// Decodes a base64 master key. `source` names where the value came from (an environment
    /// variable or a file) and is the only thing error messages say about it: neither the value
    /// nor the decoder's complaint (which can quote a byte of it) is ever echoed.
    pub fn from_base64(kid: KeyId, b64: &str, source: &str) -> Result<Self, CryptoError> {
        Ok(KeyMaterial::from_base64(kid, b64, source)?.master_key())
    }

    /// This key's id.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }
}

/// Prints a new random 256-bit master key as standard base64.
pub fn generate_master_key_base64() -> Result<String, CryptoError> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(bytes.as_mut())?;
    Ok(STANDARD.encode(bytes.as_ref()))
}

/// A master key's bytes with its id, for the few places that must hand them on: to a KMS that
/// wraps them (`keyward master-key adopt-kms`), or from one (a KMS unwraps them at start).
/// Zeroized on drop; never printed.
pub struct KeyMaterial {
    kid: KeyId,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// A new random master key.
    pub fn generate(kid: KeyId) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(bytes.as_mut())?;
        Ok(Self { kid, bytes })
    }

    /// A master key from bytes a KMS gave back; refuses any length but [`KEY_LEN`].
    pub fn from_slice(kid: KeyId, bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            CryptoError::Config(format!(
                "master key '{kid}' must be {KEY_LEN} bytes, got {}",
                bytes.len()
            ))
        })?;
        Ok(Self {
            kid,
            bytes: Zeroizing::new(array),
        })
    }

    /// Decodes a base64 master key; errors name `source`, never the value.
    pub fn from_base64(kid: KeyId, b64: &str, source: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(STANDARD.decode(b64.trim()).map_err(|_| {
            CryptoError::Config(format!(
                "{source}: master key '{kid}' is not valid base64 (generate one with `keyward keygen`)"
            ))
        })?);
        let array: &[u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            CryptoError::Config(format!(
                "{source}: master key '{kid}' must decode to {KEY_LEN} bytes, got {} (generate one with `keyward keygen`)",
                bytes.len()
            ))
        })?;
        Ok(Self {
            kid,
            bytes: Zeroizing::new(*array),
        })
    }

    /// Parses the `KEYWARD_MASTER_KEYS` form: `kid2:BASE64,kid1:BASE64`, the first primary.
    pub fn parse_list(spec: &str, source: &str) -> Result<Vec<Self>, CryptoError> {
        let mut keys = Vec::new();
        for (i, item) in spec.split(',').enumerate() {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let Some((kid, b64)) = item.split_once(':') else {
                return Err(CryptoError::Config(format!(
                    "{source}: entry {} must have the form KID:BASE64",
                    i + 1
                )));
            };
            let kid = KeyId::new(kid.trim())
                .map_err(|e| CryptoError::Config(format!("{source}: {e}")))?;
            keys.push(Self::from_base64(kid, b64, source)?);
        }
        Ok(keys)
    }

    /// The key's id.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The key's bytes, for a KMS to wrap.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// The `KID:BASE64` line a key file holds.
    pub fn to_line(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}:{}",
            self.kid,
            STANDARD.encode(self.bytes.as_ref())
        ))
    }

    /// The master key these bytes make.
    pub fn master_key(&self) -> MasterKey {
        MasterKey::from_bytes(self.kid.clone(), &self.bytes)
    }
}

/// The configured master keys. The first is primary: it wraps every new data key. The others
/// only unwrap data keys that were wrapped under them, until a rotation rewraps those.
pub struct Keyring {
    keys: Vec<MasterKey>,
    /// Whether the primary key is known to be kept somewhere that outlives this process (a
    /// file, a KMS). A key given only in an environment variable may exist nowhere else (a
    /// `$(keyward keygen)` in a subshell): rewrapping everything under it could lose the vault.
    primary_kept: bool,
    /// Where the keys came from (`KEYWARD_KMS`, `KEYWARD_MASTER_KEY_FILE`, ...), for status.
    source: String,
    /// Other secrets that open the keys (the credentials of the KMS that keeps them): no
    /// stored value may hold one either.
    guarded: Vec<Zeroizing<String>>,
}

impl fmt::Debug for Keyring {
    /// The key ids and where they came from; never a key or a guarded secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys)
            .field("primary_kept", &self.primary_kept)
            .field("source", &self.source)
            .field("guarded", &self.guarded.len())
            .finish()
    }
}

impl Keyring {
    /// Builds a keyring; refuses an empty list and duplicate key ids.
    pub fn new(keys: Vec<MasterKey>, source: &str) -> Result<Self, CryptoError> {
        if keys.is_empty() {
            return Err(CryptoError::Config(format!(
                "{source}: no master key given"
            )));
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.kid == k.kid) {
                return Err(CryptoError::Config(format!(
                    "{source}: master key id '{}' appears twice",
                    k.kid
                )));
            }
        }
        Ok(Self {
            keys,
            primary_kept: true,
            source: source.to_owned(),
            guarded: Vec::new(),
        })
    }

    /// Where these keys came from, as given to [`Keyring::new`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// This keyring, also guarding `secrets` (the credentials that unwrap it from a KMS):
    /// [`Keyring::appears_in`] finds them in a text as it finds the keys. Values shorter than
    /// 12 characters are not guarded (a PIN such as `1234` would match innocent text).
    #[must_use]
    pub fn guarding(mut self, secrets: impl IntoIterator<Item = Zeroizing<String>>) -> Self {
        self.guarded.extend(
            secrets
                .into_iter()
                .filter(|s| s.trim().len() >= 12)
                .map(|s| Zeroizing::new(s.trim().to_owned())),
        );
        self
    }

    /// This keyring with its primary key marked as given only in the environment, not shown to
    /// be kept anywhere: a master-key rotation refuses it unless the operator says otherwise.
    #[must_use]
    pub fn primary_only_in_environment(mut self) -> Self {
        self.primary_kept = false;
        self
    }

    /// This keyring with its primary key marked as kept elsewhere, on the operator's word.
    #[must_use]
    pub fn primary_kept_on_operators_word(mut self) -> Self {
        self.primary_kept = true;
        self
    }

    /// Whether `text` holds one of these master keys, as base64 (standard or URL-safe, with
    /// or without padding) anywhere in it: the master key pasted, imported or copied under
    /// another name into a value the vault would store. Every run of base64 characters long
    /// enough is decoded and its fingerprint compared; the keys' bytes are not kept.
    pub fn appears_in(&self, text: &str) -> bool {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        if self.guarded.iter().any(|g| text.contains(g.as_str())) {
            return true;
        }
        use subtle::ConstantTimeEq as _;
        const ENCODED: usize = 43; // 32 bytes, unpadded
        let bytes = text.as_bytes();
        let b64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
        let mut run_start = 0;
        for i in 0..=bytes.len() {
            if i < bytes.len() && b64(bytes[i]) {
                continue;
            }
            // A run of base64 characters ends at i: try every window of a key's length in it.
            if i - run_start >= ENCODED {
                for start in run_start..=i - ENCODED {
                    let window = &bytes[start..start + ENCODED];
                    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                        let Ok(decoded) = engine.decode(window) else {
                            continue;
                        };
                        let decoded = Zeroizing::new(decoded);
                        let print = fingerprint(&decoded);
                        if self
                            .keys
                            .iter()
                            .any(|k| bool::from(k.fingerprint.ct_eq(&print)))
                        {
                            return true;
                        }
                    }
                }
            }
            run_start = i + 1;
        }
        false
    }

    /// Whether the primary key is known to be kept somewhere besides this process's memory.
    pub fn primary_kept(&self) -> bool {
        self.primary_kept
    }

    /// This keyring with `key` as the new primary and the current keys after it (they still
    /// unwrap what they wrapped); `key` is taken as kept (the caller saved it). Refuses a key id
    /// that is already configured.
    pub fn with_new_primary(mut self, key: MasterKey) -> Result<Self, CryptoError> {
        if self.keys.iter().any(|k| k.kid == key.kid) {
            return Err(CryptoError::Config(format!(
                "master key id '{}' is already configured; choose another",
                key.kid
            )));
        }
        self.keys.insert(0, key);
        self.primary_kept = true;
        Ok(self)
    }

    /// Parses the `KEYWARD_MASTER_KEYS` form: `kid2:BASE64,kid1:BASE64`, the first primary.
    pub fn parse_list(spec: &str, source: &str) -> Result<Self, CryptoError> {
        let keys = KeyMaterial::parse_list(spec, source)?;
        Self::new(keys.iter().map(KeyMaterial::master_key).collect(), source)
    }

    /// The primary key's id: the one new data keys are wrapped under.
    pub fn primary_kid(&self) -> &KeyId {
        &self.primary().kid
    }

    fn primary(&self) -> &MasterKey {
        // `new` refuses an empty list, so there is always a first key.
        &self.keys[0]
    }

    /// All configured key ids, primary first.
    pub fn kids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|k| &k.kid)
    }

    /// Whether `kid` is configured.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_str() == kid)
    }

    fn get(&self, kid: &str) -> Result<&MasterKey, CryptoError> {
        self.keys
            .iter()
            .find(|k| k.kid.as_str() == kid)
            .ok_or_else(|| CryptoError::UnknownKeyId(kid.to_owned()))
    }

    /// Wraps `dek` for the record `record_id` under the primary key.
    pub fn wrap(&self, dek: &DataKey, record_id: &str) -> Result<Vec<u8>, CryptoError> {
        let key = self.primary();
        let kid = key.kid.as_str().as_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let aad = wrap_aad(kid, record_id);
        let ct = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: dek.bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        let mut out = Vec::with_capacity(2 + kid.len() + NONCE_LEN + ct.len());
        out.push(FORMAT_VERSION);
        // KeyId::new caps ids at 32 bytes, so the length fits a byte.
        out.push(kid.len() as u8);
        out.extend_from_slice(kid);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Unwraps the data key of `record_id` with whichever configured key wrapped it.
    pub fn unwrap(&self, wrapped: &[u8], record_id: &str) -> Result<DataKey, CryptoError> {
        let parts = WrappedParts::parse(wrapped)?;
        let key = self.get(parts.kid)?;
        let aad = wrap_aad(parts.kid.as_bytes(), record_id);
        let pt = Zeroizing::new(
            key.cipher
                .decrypt(
                    &Nonce::from(parts.nonce),
                    Payload {
                        msg: parts.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| CryptoError::Decrypt)?,
        );
        let bytes: &[u8; KEY_LEN] = pt
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        Ok(DataKey::from_bytes(bytes))
    }

    /// Reads the key id out of a wrapped data key without decrypting anything.
    pub fn wrapped_kid(wrapped: &[u8]) -> Result<&str, CryptoError> {
        WrappedParts::parse(wrapped).map(|p| p.kid)
    }
}

struct WrappedParts<'a> {
    kid: &'a str,
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

impl<'a> WrappedParts<'a> {
    fn parse(b: &'a [u8]) -> Result<Self, CryptoError> {
        let (&version, rest) = b.split_first().ok_or(CryptoError::Malformed)?;
        if version != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        let (&kid_len, rest) = rest.split_first().ok_or(CryptoError::Malformed)?;
        let kid_len = usize::from(kid_len);
        if rest.len() != kid_len + NONCE_LEN + KEY_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (kid, rest) = rest.split_at(kid_len);
        let kid = std::str::from_utf8(kid).map_err(|_| CryptoError::Malformed)?;
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
        Ok(Self {
            kid,
            nonce,
            ciphertext,
        })
    }
}

/// Associated data of a wrapped data key: format version, key id, record id, each
/// length-prefixed so that no two distinct triples encode alike.
fn wrap_aad(kid: &[u8], record_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + kid.len() + record_id.len());
    aad.extend_from_slice(b"keyward-wrap");
    aad.push(FORMAT_VERSION);
    crate::envelope::push_field(&mut aad, kid);
    crate::envelope::push_field(&mut aad, record_id.as_bytes());
    aad
}
