//! Configuration in two stages: raw values (flags and `KEYWARD_*` variables) in
//! [`ConfigInputs`] are turned once into a validated [`Config`].

use std::io::Write as _;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use keyward_crypto::{KeyId, KeyMaterial, Keyring, generate_master_key_base64};
use keyward_kms::Kms;
use keyward_store::Location;
use zeroize::Zeroizing;

use crate::Error;

/// The raw inputs: where the data lives, whether the development key is refused, and which KMS
/// wraps the master keys. Master keys are read from `KEYWARD_MASTER_KEYS`, `KEYWARD_MASTER_KEY`
/// or `KEYWARD_MASTER_KEY_FILE`, unless a KMS keeps them.
#[derive(Debug, Clone)]
pub struct ConfigInputs {
    /// The data directory (SQLite database, development key).
    pub data_dir: PathBuf,
    /// A database URL overriding the SQLite file.
    pub database_url: Option<String>,
    /// Refuse the development key.
    pub production: bool,
    /// `KEYWARD_KMS`: the KMS that wraps the master keys (`transit:KEY`, `aws-kms:KEY`,
    /// `pkcs11:...`); the keys then live in the store, wrapped, and nowhere else.
    pub kms: Option<String>,
}

impl ConfigInputs {
    /// The inputs from `KEYWARD_DATA_DIR`, `KEYWARD_DATABASE_URL` and `KEYWARD_PRODUCTION`,
    /// with the CLI's defaults.
    pub fn from_env() -> Self {
        Self {
            data_dir: std::env::var_os("KEYWARD_DATA_DIR")
                .map_or_else(|| PathBuf::from("keyward-data"), PathBuf::from),
            database_url: std::env::var("KEYWARD_DATABASE_URL")
                .ok()
                .filter(|u| !u.is_empty()),
            production: std::env::var("KEYWARD_PRODUCTION")
                .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes")),
            kms: keyward_kms::process_env("KEYWARD_KMS"),
        }
    }
}

impl ConfigInputs {
    /// Where the data lives (creating the data directory, private, for a SQLite file).
    pub fn location(&self) -> Result<Location, Error> {
        let location = match &self.database_url {
            Some(url) if !url.is_empty() => Location::Url(url.clone()),
            _ => Location::in_data_dir(&self.data_dir),
        };
        if matches!(location, Location::SqliteFile(_)) {
            create_private_dir(&self.data_dir)?;
        }
        Ok(location)
    }
}

/// Validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where the vault's data lives.
    pub location: Location,
    /// The master keys, or the KMS that unwraps them.
    pub keys: MasterKeys,
    /// The development key's file, if these are the development key, and whether this start
    /// made it.
    dev_key: Option<(PathBuf, bool)>,
}

/// Where the master keys come from.
#[derive(Debug)]
pub enum MasterKeys {
    /// Given in the environment or a file, or the development key.
    Given(Keyring),
    /// Kept in the store, wrapped by this KMS: [`Config::keyring`] unwraps them.
    Kms(Arc<dyn Kms>),
}

/// The key id of a key given by `KEYWARD_MASTER_KEY` or `KEYWARD_MASTER_KEY_FILE`.
const SINGLE_KID: &str = "default";
/// The key id of the development key.
const DEV_KID: &str = "dev";
const DEV_KEY_FILE: &str = "master.key";

impl Config {
    /// Validates `inputs` and loads the master keys (or opens the KMS, which unwraps them in
    /// [`Config::keyring`]).
    pub fn load(inputs: &ConfigInputs) -> Result<Self, Error> {
        let location = inputs.location()?;
        if let Some(spec) = &inputs.kms {
            // From here on the KMS's credentials are Keyward's own, like KEYWARD_*.
            keyward_core::env::withhold_kms_credentials(keyward_kms::credential_variables(spec));
            if let Some(name) = GIVEN_KEY_VARIABLES.iter().find(|v| env(v).is_some()) {
                return Err(config_err(format!(
                    "KEYWARD_KMS and {name} are both set: with a KMS the master keys live in the \
                     store, wrapped by it. To move the keys {name} gives into the KMS, run \
                     `keyward master-key adopt-kms` with both set, then unset {name}"
                )));
            }
            let kms = keyward_kms::open(spec, &keyward_kms::process_env)?;
            let dev_key = inputs.data_dir.join(DEV_KEY_FILE);
            if dev_key.exists() {
                tracing::warn!(
                    path = %dev_key.display(),
                    "a development key file is in the data directory, though a KMS keeps the \
                     master keys: anyone who can read the directory can open what it wrapped. \
                     Delete it once `keyward master-key adopt-kms` has moved it into the KMS"
                );
            }
            return Ok(Self {
                location,
                keys: MasterKeys::Kms(kms),
                dev_key: None,
            });
        }
        let keys = given_keys(&inputs.data_dir, inputs.production)?;
        let dev_key = keys.dev_key_file.clone().map(|p| (p, keys.dev_key_made));
        Ok(Self {
            location,
            keys: MasterKeys::Given(keys.into_keyring()?),
            dev_key,
        })
    }

    /// The master keys: as given, or unwrapped by the KMS (one call per key; on a new store,
    /// a first key is made and wrapped).
    pub async fn keyring(self) -> Result<Keyring, Error> {
        match self.keys {
            MasterKeys::Given(keyring) => {
                if let Some((path, made)) = &self.dev_key {
                    refuse_dev_key_for_kms_store(&self.location, path, *made).await?;
                    tracing::warn!(
                        path = %path.display(),
                        "no master key configured: using a DEVELOPMENT key stored beside the data. \
                         Anyone who can read the data directory can decrypt it. For real use, move \
                         to a key of your own: keyward master-key rotate --new-key-file PATH, then \
                         KEYWARD_MASTER_KEY_FILE=PATH (or into a KMS: keyward master-key adopt-kms)."
                    );
                }
                Ok(keyring)
            }
            MasterKeys::Kms(kms) => crate::kms::keyring(kms.as_ref(), &self.location).await,
        }
    }

    /// The KMS, if one keeps the master keys.
    pub fn kms(&self) -> Option<&Arc<dyn Kms>> {
        match &self.keys {
            MasterKeys::Kms(kms) => Some(kms),
            MasterKeys::Given(_) => None,
        }
    }
}

/// The variables that give master keys directly.
const GIVEN_KEY_VARIABLES: [&str; 3] = [
    "KEYWARD_MASTER_KEYS",
    "KEYWARD_MASTER_KEY",
    "KEYWARD_MASTER_KEY_FILE",
];

/// A store whose master keys a KMS keeps is not opened with the development key (on
/// PostgreSQL nothing else would stop it: the data directory holds no database to notice): the
/// error says which KMS to name, and a development key made for this start is removed.
async fn refuse_dev_key_for_kms_store(
    location: &Location,
    path: &Path,
    made: bool,
) -> Result<(), Error> {
    let stored = keyward_store::read_master_keys(location).await?;
    let Some(key) = stored.keys.first() else {
        return Ok(());
    };
    if made {
        let _ = std::fs::remove_file(path);
        // And the directory, if this start made it for the key (it is empty then).
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    Err(config_err(format!(
        "this store's master keys are kept by a KMS ({}:{}): set KEYWARD_KMS to it (no \
         development key is used for such a store)",
        key.kms, key.kms_key
    )))
}

/// Master keys given in the environment or a file, as bytes: for a keyring, or for a KMS to
/// adopt (`keyward master-key adopt-kms`).
#[derive(Debug)]
pub struct GivenKeys {
    /// The keys, primary first.
    pub keys: Vec<KeyMaterial>,
    /// Where they came from, for messages.
    pub source: String,
    /// Given only in a variable: nothing shows they are kept anywhere else.
    pub only_in_environment: bool,
    /// The development key's file, when these are the development key.
    pub dev_key_file: Option<PathBuf>,
    /// Whether this start made that file.
    pub dev_key_made: bool,
}

impl GivenKeys {
    /// The keyring these keys make.
    pub fn into_keyring(self) -> Result<Keyring, Error> {
        let keyring = Keyring::new(
            self.keys.iter().map(KeyMaterial::master_key).collect(),
            &self.source,
        )?;
        Ok(if self.only_in_environment {
            keyring.primary_only_in_environment()
        } else {
            keyring
        })
    }
}

/// The master keys given in `KEYWARD_MASTER_KEYS`, `KEYWARD_MASTER_KEY` or
/// `KEYWARD_MASTER_KEY_FILE`, or the development key (refused with `production`).
pub fn given_keys(data_dir: &Path, production: bool) -> Result<GivenKeys, Error> {
    load_keys(data_dir, production)
}

fn config_err(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

/// A non-empty variable; the copy is wiped when dropped (key material passes through here).
fn env(name: &str) -> Option<Zeroizing<String>> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(Zeroizing::new)
}

fn load_keys(data_dir: &Path, production: bool) -> Result<GivenKeys, Error> {
    let list = env("KEYWARD_MASTER_KEYS");
    let single = env("KEYWARD_MASTER_KEY");
    let file = env("KEYWARD_MASTER_KEY_FILE");
    let given = [list.is_some(), single.is_some(), file.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if given > 1 {
        return Err(config_err(
            "set only one of KEYWARD_MASTER_KEYS, KEYWARD_MASTER_KEY and KEYWARD_MASTER_KEY_FILE",
        ));
    }
    let default_kid = || KeyId::new(SINGLE_KID);
    let given = |keys: Vec<KeyMaterial>, source: &str, only_in_environment: bool| GivenKeys {
        keys,
        source: source.to_owned(),
        only_in_environment,
        dev_key_file: None,
        dev_key_made: false,
    };
    // Keys given in a variable are not shown to be kept anywhere else: a rotation refuses to
    // rewrap the vault under such a primary key without the operator's word.
    if let Some(list) = list {
        let source = "KEYWARD_MASTER_KEYS";
        return Ok(given(KeyMaterial::parse_list(&list, source)?, source, true));
    }
    if let Some(b64) = single {
        let source = "KEYWARD_MASTER_KEY";
        let key = KeyMaterial::from_base64(default_kid()?, &b64, source)?;
        return Ok(given(vec![key], source, true));
    }
    if let Some(path) = file {
        // A path is not secret; keep a plain copy for messages.
        let path: String = path.as_str().to_owned();
        let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
            config_err(format!(
                "KEYWARD_MASTER_KEY_FILE: cannot read the master key file {path}: {e}"
            ))
        })?);
        warn_if_shared(Path::new(&path));
        let source = "KEYWARD_MASTER_KEY_FILE";
        // A bare key (id `default`), or `KID:BASE64[,KID:BASE64...]` as `keyward master-key
        // rotate --new-key-file` writes it.
        if text.contains(':') {
            return Ok(given(
                KeyMaterial::parse_list(text.trim(), source)?,
                source,
                false,
            ));
        }
        let key = KeyMaterial::from_base64(default_kid()?, &text, source)?;
        return Ok(given(vec![key], source, false));
    }
    if production {
        return Err(config_err(
            "no master key configured: set KEYWARD_KMS, KEYWARD_MASTER_KEYS, KEYWARD_MASTER_KEY or \
             KEYWARD_MASTER_KEY_FILE (--production refuses the development key)",
        ));
    }
    dev_keys(data_dir)
}

/// The development key: created on first use in the data directory, mode 0600, with a warning
/// every time it is used (as Vault's dev mode does).
fn dev_keys(data_dir: &Path) -> Result<GivenKeys, Error> {
    let path: PathBuf = data_dir.join(DEV_KEY_FILE);
    let made = !path.exists();
    if made {
        if data_dir.join("keyward.db").exists() {
            // A new key would leave everything already stored undecryptable.
            return Err(config_err(format!(
                "{} holds a vault but no development key ({DEV_KEY_FILE}): restore the key file, \
                 set KEYWARD_MASTER_KEY(S) to the key the vault was made with, or, if a KMS keeps \
                 its master keys, set KEYWARD_KMS to it",
                data_dir.display()
            )));
        }
        create_private_dir(data_dir)?;
        let key = Zeroizing::new(generate_master_key_base64()?);
        write_private_new(&path, key.as_bytes())?;
    }
    let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
        config_err(format!(
            "cannot read the development key {}: {e}",
            path.display()
        ))
    })?);
    let source = format!("development key file {}", path.display());
    let key = KeyMaterial::from_base64(KeyId::new(DEV_KID)?, &text, &source)?;
    Ok(GivenKeys {
        keys: vec![key],
        source,
        only_in_environment: false,
        dev_key_file: Some(path),
        dev_key_made: made,
    })
}

/// Warns when a key file can be read by anyone but its owner.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the master key file is readable by other users; `chmod 600` it"
            );
        }
    }
}

/// Creates the data directory, readable by its owner only (it holds the database and maybe the
/// development key). An existing directory is left as it is.
fn create_private_dir(dir: &Path) -> Result<(), Error> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| {
        config_err(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })
}

/// Creates `path` readable by its owner only, whole or not at all: the contents go to a
/// private temporary file beside it, which is synced and then linked into place unless a
/// concurrent first run got there first (then its key stands, and this one is dropped).
fn write_private_new(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let fail = |e: std::io::Error| config_err(format!("cannot create {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    // tempfile creates the file exclusively with mode 0600 on Unix.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.write_all(contents).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(e.error)),
    }
}
