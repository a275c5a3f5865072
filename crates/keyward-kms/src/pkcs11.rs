//! A PKCS#11 token (an HSM, or SoftHSM2 in tests): an AES key on the token wraps each master key
//! with `CKM_AES_GCM` through `C_Encrypt`/`C_Decrypt`, the key id bound as GCM's additional data
//! ([`aad`]).
//!
//! `KEYWARD_KMS=pkcs11:module=PATH,token=LABEL,key=LABEL` (or `slot=ID` instead of `token=`; a
//! bare item is the key's label). The user PIN comes from `pin_file=PATH` (its one line) or else
//! from `KEYWARD_PKCS11_PIN`. The key must be an AES secret key (`CKO_SECRET_KEY`,
//! `CKK_AES`) with that `CKA_LABEL`, allowed to encrypt and decrypt; a new one should be
//! AES-256, sensitive and not extractable, e.g.
//! `pkcs11-tool --keygen --key-type AES:32 --label keyward-kek --sensitive --private`.
//!
//! A wrapped key is 61 bytes, `format ‖ iv ‖ ciphertext ‖ tag`:
//!
//! | bytes | what |
//! |---|---|
//! | 1 | format, `1`: AES-GCM, 12-byte IV, 128-bit tag, AAD `keyward-kek-v1:<kid>` |
//! | 12 | the IV, fresh from the OS's random generator for each wrap |
//! | 32 | the master key, encrypted |
//! | 16 | GCM's tag |
//!
//! A random 96-bit IV is safe here: a token key wraps a handful of master keys in its life, far
//! below GCM's limit for random IVs. (Some HSMs in FIPS mode insist on making the IV themselves;
//! such a token would need another format.) [`Wrapped::key_version`] is the token key's
//! `CKA_ID` in hex, when it has one: it tells two keys of the same label apart, so a
//! replaced token key shows as a new "version".
//!
//! PKCS#11 calls block, so each operation runs on tokio's blocking pool. A module is loaded and
//! `C_Initialize`d once per process (a second `C_Initialize` fails, and its login state is the
//! process's): the contexts live in a process-wide map keyed by the module's path, and each
//! module serves one operation at a time. An operation opens a session, logs in (a token that
//! says the user is already logged in is fine), finds the key by its label, makes its one call,
//! and closes the session, which logs the process out again (PKCS#11 logs out when the last
//! session closes). So a wrong PIN is found at once, not hidden behind an earlier good login.
//! Calls are rare (one per master key at start, and when wrapping one), so this costs nothing
//! that matters.
//!
//! The PIN is a `secrecy` string (cryptoki's `AuthPin`) and never appears in an error or in
//! `Debug`; unwrapped bytes are zeroized.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use futures_util::future::BoxFuture;
use keyward_crypto::{KEY_LEN, KeyId, KeyMaterial};
use zeroize::Zeroizing;

use crate::{Kms, KmsError, Spec, Wrapped, aad};

/// The variable the user PIN is read from when `pin_file=` is not given.
pub const PIN_VAR: &str = "KEYWARD_PKCS11_PIN";

/// The first byte of every wrapped key this backend makes (see the module's documentation).
const FORMAT: u8 = 1;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const BLOB_LEN: usize = 1 + IV_LEN + KEY_LEN + TAG_LEN;

/// An AES key on a PKCS#11 token.
#[derive(Debug)]
pub struct Pkcs11Kms {
    inner: Arc<Inner>,
}

/// What a blocking operation needs; shared with it by `Arc`.
#[derive(Debug)]
struct Inner {
    module: PathBuf,
    token: TokenRef,
    key: String,
    /// A `SecretString`: its `Debug` shows no PIN.
    pin: AuthPin,
    /// `describe()`, for messages.
    who: String,
}

/// How the token is named.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenRef {
    Label(String),
    Slot(u64),
}

impl std::fmt::Display for TokenRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenRef::Label(label) => write!(f, "token '{label}'"),
            TokenRef::Slot(id) => write!(f, "the token in slot {id}"),
        }
    }
}

impl Pkcs11Kms {
    /// The key `spec` names. Reads the PIN (from `pin_file=` or [`PIN_VAR`]) and checks that
    /// the module file exists; loads nothing yet.
    pub fn new(spec: &Spec, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, KmsError> {
        spec.only(&["module", "token", "slot", "key", "pin_file"])?;
        let module = PathBuf::from(spec.require("module", "the PKCS#11 module, a .so file")?);
        if !module.is_file() {
            return Err(KmsError::Config(format!(
                "pkcs11: there is no PKCS#11 module at {} (module= names the vendor's .so file, \
                 such as /usr/lib/softhsm/libsofthsm2.so)",
                module.display()
            )));
        }
        let token = match (spec.get("token"), spec.get("slot")) {
            (Some(label), None) => TokenRef::Label(label.to_owned()),
            (None, Some(slot)) => TokenRef::Slot(slot.parse().map_err(|_| {
                KmsError::Config(format!("pkcs11: slot={slot} is not a slot id (a number)"))
            })?),
            (Some(_), Some(_)) => {
                return Err(KmsError::Config(
                    "pkcs11: give token=LABEL or slot=ID, not both".into(),
                ));
            }
            (None, None) => {
                return Err(KmsError::Config(
                    "pkcs11: token= is missing (the token's label; or slot=ID)".into(),
                ));
            }
        };
        let key = spec
            .require("key", "the label of the AES key on the token")?
            .to_owned();
        let pin = match spec.get("pin_file") {
            Some(path) => read_pin_file(Path::new(path))?,
            // Copied into the secret and the variable's copy zeroized.
            None => env(PIN_VAR)
                .map(|pin| AuthPin::from(Zeroizing::new(pin).as_str()))
                .ok_or_else(|| {
                    KmsError::Config(format!(
                        "pkcs11: no user PIN: set pin_file=PATH or {PIN_VAR}"
                    ))
                })?,
        };
        let who = format!("pkcs11 key '{key}' on {token} at {}", module.display());
        Ok(Self {
            inner: Arc::new(Inner {
                module,
                token,
                key,
                pin,
                who,
            }),
        })
    }

    /// Runs `op` on the blocking pool with a logged-in session and the key.
    async fn run<T, F>(&self, op: F) -> Result<T, KmsError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &Session, &FoundKey) -> Result<T, KmsError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.with_key(op))
            .await
            .unwrap_or_else(|e| {
                Err(KmsError::Rejected {
                    kms: self.inner.who.clone(),
                    cause: format!("the PKCS#11 call did not finish: {e}"),
                })
            })
    }
}

/// Reads a PIN file: its content less a final line break.
fn read_pin_file(path: &Path) -> Result<AuthPin, KmsError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        KmsError::Config(format!(
            "pkcs11: cannot read the PIN file {}: {e}",
            path.display()
        ))
    })?);
    let pin = text.strip_suffix('\n').unwrap_or(&text);
    let pin = pin.strip_suffix('\r').unwrap_or(pin);
    if pin.is_empty() {
        return Err(KmsError::Config(format!(
            "pkcs11: the PIN file {} is empty",
            path.display()
        )));
    }
    Ok(AuthPin::from(pin))
}

/// A loaded and initialised module; `busy` makes its operations take turns.
#[derive(Debug)]
struct Module {
    ctx: Pkcs11,
    busy: Mutex<()>,
}

/// The modules this process has loaded, by (canonical) path: one context each, for good.
static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();

/// The module at `path`, loaded and `C_Initialize`d the first time. A failed load or
/// initialisation is not kept, so a later call tries again.
fn module(path: &Path) -> Result<Arc<Module>, KmsError> {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut modules = MODULES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(module) = modules.get(&key) {
        return Ok(Arc::clone(module));
    }
    let ctx = Pkcs11::new(&key).map_err(|e| {
        KmsError::Config(format!(
            "pkcs11: cannot load the PKCS#11 module {}: {e}",
            path.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Something else in this process initialised it: its context is ours too.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(KmsError::Config(format!(
                "pkcs11: the PKCS#11 module {} did not initialise ({}); check its configuration \
                 (SoftHSM2 reads SOFTHSM2_CONF)",
                path.display(),
                describe_error(&e)
            )));
        }
    }
    let module = Arc::new(Module {
        ctx,
        busy: Mutex::new(()),
    });
    modules.insert(key, Arc::clone(&module));
    Ok(module)
}

/// The key an operation found, and what it may do.
#[derive(Debug)]
struct FoundKey {
    handle: ObjectHandle,
    /// `CKA_ID` in hex, if it has one.
    id: Option<String>,
    can_encrypt: bool,
    can_decrypt: bool,
    /// `CKA_VALUE_LEN`, if the token says.
    len: Option<usize>,
}

impl Inner {
    fn rejected(&self, cause: impl Into<String>) -> KmsError {
        KmsError::Rejected {
            kms: self.who.clone(),
            cause: cause.into(),
        }
    }

    /// The error a failed call makes: the device gone is transient, a PIN refused is
    /// `Refused`, anything else `Rejected`; `doing` says what was being done.
    fn error(&self, doing: &str, e: &CkError) -> KmsError {
        let CkError::Pkcs11(rv, _) = e else {
            return self.rejected(format!("{doing}: {}", describe_error(e)));
        };
        let code = describe_error(e);
        match rv {
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange => {
                KmsError::Refused {
                    kms: self.who.clone(),
                    cause: format!("the PIN was refused ({code}): check pin_file= or {PIN_VAR}"),
                }
            }
            RvError::PinLocked => KmsError::Refused {
                kms: self.who.clone(),
                cause: format!(
                    "the user PIN is locked ({code}), after too many wrong tries; the token's \
                     security officer must unlock it"
                ),
            },
            RvError::PinExpired => KmsError::Refused {
                kms: self.who.clone(),
                cause: format!("the user PIN has expired ({code}); set a new one"),
            },
            RvError::UserPinNotInitialized => KmsError::Refused {
                kms: self.who.clone(),
                cause: format!("the token has no user PIN yet ({code})"),
            },
            RvError::DeviceError
            | RvError::DeviceMemory
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SessionClosed
            | RvError::SessionCount
            | RvError::FunctionFailed
            | RvError::FunctionCanceled
            | RvError::Cancel
            | RvError::HostMemory => KmsError::Unreachable {
                kms: self.who.clone(),
                cause: format!("{doing}: {code}"),
            },
            RvError::KeyFunctionNotPermitted
            | RvError::KeyTypeInconsistent
            | RvError::KeySizeRange
            | RvError::MechanismInvalid
            | RvError::MechanismParamInvalid => self.rejected(format!(
                "{doing}: the key cannot do AES-GCM here ({code}); it must be an AES key allowed \
                 to encrypt and decrypt, on a token that offers CKM_AES_GCM"
            )),
            _ => self.rejected(format!("{doing}: {code}")),
        }
    }

    /// The slot of the token this key is on.
    fn slot(&self, ctx: &Pkcs11) -> Result<Slot, KmsError> {
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| self.error("listing the module's slots", &e))?;
        // (slot, label, initialised)
        let mut tokens = Vec::new();
        for slot in &slots {
            let info = ctx
                .get_token_info(*slot)
                .map_err(|e| self.error("reading a token's label", &e))?;
            tokens.push((*slot, info.label().to_owned(), info.token_initialized()));
        }
        let present = || {
            if tokens.is_empty() {
                return "the module has no token".to_owned();
            }
            let list: Vec<String> = tokens
                .iter()
                .map(|(s, l, initialised)| match initialised {
                    true => format!("'{l}' in slot {}", s.id()),
                    false => format!("an uninitialised one in slot {}", s.id()),
                })
                .collect();
            format!("tokens present: {}", list.join(", "))
        };
        match &self.token {
            TokenRef::Label(want) => {
                let found: Vec<Slot> = tokens
                    .iter()
                    .filter(|(_, l, initialised)| *initialised && l == want)
                    .map(|(s, _, _)| *s)
                    .collect();
                match found.as_slice() {
                    [slot] => Ok(*slot),
                    [] => Err(self.rejected(format!(
                        "no token is labelled '{want}' in {} ({})",
                        self.module.display(),
                        present()
                    ))),
                    many => Err(self.rejected(format!(
                        "{} tokens are labelled '{want}'; name one with slot=ID ({})",
                        many.len(),
                        present()
                    ))),
                }
            }
            TokenRef::Slot(id) => match tokens.iter().find(|(s, _, _)| s.id() == *id) {
                Some((slot, _, true)) => Ok(*slot),
                Some((_, _, false)) => Err(self.rejected(format!(
                    "the token in slot {id} of {} is not initialised ({})",
                    self.module.display(),
                    present()
                ))),
                None => Err(self.rejected(format!(
                    "slot {id} of {} holds no token ({})",
                    self.module.display(),
                    present()
                ))),
            },
        }
    }

    /// Finds the one AES secret key labelled `self.key`, saying plainly why when there is none
    /// or more than one.
    fn find_key(&self, session: &Session) -> Result<FoundKey, KmsError> {
        let label = Attribute::Label(self.key.as_bytes().to_vec());
        let handles = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                label.clone(),
            ])
            .map_err(|e| self.error("looking for the key", &e))?;
        let handle = match handles.as_slice() {
            [handle] => *handle,
            [] => {
                let others = session
                    .find_objects(&[label])
                    .map_err(|e| self.error("looking for the key", &e))?;
                return Err(match others.first() {
                    Some(other) => self.rejected(format!(
                        "the object labelled '{}' on {} is {}, not an AES secret key, so it \
                         cannot wrap with AES-GCM",
                        self.key,
                        self.token,
                        self.what_is(session, *other)
                    )),
                    None => self.rejected(format!(
                        "no AES key is labelled '{}' on {} (or the user cannot see it)",
                        self.key, self.token
                    )),
                });
            }
            many => {
                return Err(self.rejected(format!(
                    "{} AES keys are labelled '{}' on {}; give the one to use a label of its own",
                    many.len(),
                    self.key,
                    self.token
                )));
            }
        };
        let attributes = session
            .get_attributes(
                handle,
                &[
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                    AttributeType::Id,
                    AttributeType::ValueLen,
                ],
            )
            .map_err(|e| self.error("reading the key's attributes", &e))?;
        // An attribute the token does not report is left out; assume it allows.
        let mut found = FoundKey {
            handle,
            id: None,
            can_encrypt: true,
            can_decrypt: true,
            len: None,
        };
        for attribute in attributes {
            match attribute {
                Attribute::Encrypt(v) => found.can_encrypt = v,
                Attribute::Decrypt(v) => found.can_decrypt = v,
                Attribute::Id(id) if !id.is_empty() => found.id = Some(hex(&id)),
                Attribute::ValueLen(len) => found.len = Some(usize::from(len)),
                _ => {}
            }
        }
        Ok(found)
    }

    /// "a private key (RSA)": an object's class and key type, for messages.
    fn what_is(&self, session: &Session, object: ObjectHandle) -> String {
        let attributes = session
            .get_attributes(object, &[AttributeType::Class, AttributeType::KeyType])
            .unwrap_or_default();
        let mut class = None;
        let mut kind = None;
        for attribute in attributes {
            match attribute {
                Attribute::Class(c) => class = Some(c.to_string()),
                Attribute::KeyType(k) => kind = Some(k.to_string()),
                _ => {}
            }
        }
        match (class, kind) {
            (Some(c), Some(k)) => format!("a {c} of type {k}"),
            (Some(c), None) => format!("a {c}"),
            _ => "an object of another kind".to_owned(),
        }
    }

    /// Loads the module, finds the token, opens a session, logs in, finds the key, and runs
    /// `op`; one operation per module at a time. The session closes (and so logs out) when
    /// this returns.
    fn with_key<T>(
        &self,
        op: impl FnOnce(&Inner, &Session, &FoundKey) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let module = module(&self.module)?;
        let _turn = module.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = self.slot(&module.ctx)?;
        let info = module
            .ctx
            .get_token_info(slot)
            .map_err(|e| self.error("reading the token's state", &e))?;
        if info.user_pin_locked() {
            return Err(KmsError::Refused {
                kms: self.who.clone(),
                cause: "the user PIN is locked, after too many wrong tries; the token's security \
                        officer must unlock it"
                    .into(),
            });
        }
        let session = module
            .ctx
            .open_ro_session(slot)
            .map_err(|e| self.error("opening a session", &e))?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(self.error("logging in", &e)),
        }
        let key = self.find_key(&session)?;
        op(self, &session, &key)
    }
}

impl Kms for Pkcs11Kms {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn key_name(&self) -> String {
        format!("'{}' on {}", self.inner.key, self.inner.token)
    }

    fn guarded_secrets(&self) -> Vec<zeroize::Zeroizing<String>> {
        use secrecy::ExposeSecret as _;
        vec![zeroize::Zeroizing::new(
            self.inner.pin.expose_secret().to_owned(),
        )]
    }

    fn location(&self) -> String {
        self.inner.module.display().to_string()
    }

    fn wrap<'a>(&'a self, key: &'a KeyMaterial) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        let plaintext = Zeroizing::new(*key.expose());
        let aad = aad(key.kid());
        Box::pin(self.run(move |inner, session, found| {
            if !found.can_encrypt || !found.can_decrypt {
                return Err(inner.rejected(format!(
                    "the AES key labelled '{}' may not {} (its CKA_ENCRYPT or CKA_DECRYPT is \
                     false), and a wrapped master key must be able to come back",
                    inner.key,
                    if found.can_encrypt {
                        "decrypt"
                    } else {
                        "encrypt"
                    }
                )));
            }
            if let Some(len) = found.len.filter(|len| *len != KEY_LEN) {
                return Err(inner.rejected(format!(
                    "the AES key labelled '{}' is AES-{}; master keys are wrapped only under \
                     AES-256 keys",
                    inner.key,
                    len * 8
                )));
            }
            let mut iv = [0u8; IV_LEN];
            keyward_crypto::fill_random(&mut iv)
                .map_err(|e| inner.rejected(format!("no random IV: {e}")))?;
            let ciphertext = {
                let params = GcmParams::new(&mut iv, aad.as_bytes(), 128.into())
                    .map_err(|e| inner.error("setting up AES-GCM", &e))?;
                session
                    .encrypt(
                        &Mechanism::AesGcm(params),
                        found.handle,
                        plaintext.as_slice(),
                    )
                    .map_err(|e| inner.error("encrypting", &e))?
            };
            if ciphertext.len() != KEY_LEN + TAG_LEN {
                return Err(inner.rejected(format!(
                    "AES-GCM gave {} bytes for a {KEY_LEN}-byte key; expected {}",
                    ciphertext.len(),
                    KEY_LEN + TAG_LEN
                )));
            }
            let mut blob = Vec::with_capacity(BLOB_LEN);
            blob.push(FORMAT);
            blob.extend_from_slice(&iv);
            blob.extend_from_slice(&ciphertext);
            Ok(Wrapped {
                blob,
                key_version: found.id.clone(),
            })
        }))
    }

    fn unwrap<'a>(
        &'a self,
        kid: &'a KeyId,
        blob: &'a [u8],
    ) -> BoxFuture<'a, Result<KeyMaterial, KmsError>> {
        Box::pin(async move {
            if blob.len() != BLOB_LEN || blob.first() != Some(&FORMAT) {
                return Err(self.inner.rejected(format!(
                    "the stored wrapped key is not a PKCS#11 one (format {FORMAT}, {BLOB_LEN} \
                     bytes)"
                )));
            }
            let mut iv = [0u8; IV_LEN];
            iv.copy_from_slice(&blob[1..=IV_LEN]);
            let ciphertext = blob[1 + IV_LEN..].to_vec();
            let aad = aad(kid);
            let bytes = self
                .run(move |inner, session, found| {
                    if !found.can_decrypt {
                        return Err(inner.rejected(format!(
                            "the AES key labelled '{}' may not decrypt (its CKA_DECRYPT is false)",
                            inner.key
                        )));
                    }
                    let params = GcmParams::new(&mut iv, aad.as_bytes(), 128.into())
                        .map_err(|e| inner.error("setting up AES-GCM", &e))?;
                    match session.decrypt(&Mechanism::AesGcm(params), found.handle, &ciphertext) {
                        Ok(plaintext) => Ok(Zeroizing::new(plaintext)),
                        // The call itself failed: the tag did not verify (SoftHSM says
                        // CKR_GENERAL_ERROR, others CKR_ENCRYPTED_DATA_INVALID); unless the
                        // device went away, it is the blob or the key.
                        Err(e @ CkError::Pkcs11(_, Function::Decrypt)) => {
                            match inner.error("decrypting", &e) {
                                transient @ KmsError::Unreachable { .. } => Err(transient),
                                _ => Err(inner.rejected(
                                    "the wrapped key does not open under this key (wrong key, \
                                     wrong key id, or tampered)",
                                )),
                            }
                        }
                        Err(e) => Err(inner.error("decrypting", &e)),
                    }
                })
                .await?;
            KeyMaterial::from_slice(kid.clone(), &bytes)
                .map_err(|e| self.inner.rejected(e.to_string()))
        })
    }
}

/// A cryptoki error in a line: `CKR_PIN_INCORRECT from C_Login` rather than the standard's
/// paragraph; a module that did not load says why.
fn describe_error(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("{} from {}", ckr_name(rv), c_name(function)),
        other => other.to_string(),
    }
}

/// `PinIncorrect` → `CKR_PIN_INCORRECT`.
fn ckr_name(rv: &RvError) -> String {
    let debug = format!("{rv:?}");
    let mut name = String::from("CKR_");
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// `Function::Login` → `C_Login`.
fn c_name(function: &Function) -> String {
    format!("C_{function:?}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn error_codes_read_as_the_standard_names_them() {
        assert_eq!(ckr_name(&RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            describe_error(&CkError::Pkcs11(RvError::GeneralError, Function::Decrypt)),
            "CKR_GENERAL_ERROR from C_Decrypt"
        );
        assert_eq!(hex(&[0x01, 0xab]), "01ab");
    }
}
