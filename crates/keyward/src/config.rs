//! Configuration in two stages: raw values (flags and `KEYWARD_*` variables) in
//! [`ConfigInputs`] are turned once into a validated [`Config`].

use std::io::Write as _;
use std::path::{Path, PathBuf};

use keyward_crypto::{KeyId, Keyring, MasterKey, generate_master_key_base64};
use keyward_store::Location;
use zeroize::Zeroizing;

use crate::Error;

/// The raw inputs: where the data lives, and whether the development key is refused. Master
/// keys are read from `KEYWARD_MASTER_KEYS`, `KEYWARD_MASTER_KEY` or `KEYWARD_MASTER_KEY_FILE`.
#[derive(Debug, Clone)]
pub struct ConfigInputs {
    /// The data directory (SQLite database, development key).
    pub data_dir: PathBuf,
    /// A database URL overriding the SQLite file.
    pub database_url: Option<String>,
    /// Refuse the development key.
    pub production: bool,
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
        }
    }
}

/// Validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where the vault's data lives.
    pub location: Location,
    /// The master keys.
    pub keyring: Keyring,
}

/// The key id of a key given by `KEYWARD_MASTER_KEY` or `KEYWARD_MASTER_KEY_FILE`.
const SINGLE_KID: &str = "default";
/// The key id of the development key.
const DEV_KID: &str = "dev";
const DEV_KEY_FILE: &str = "master.key";

impl Config {
    /// Validates `inputs` and loads the master keys.
    pub fn load(inputs: &ConfigInputs) -> Result<Self, Error> {
        let location = match &inputs.database_url {
            Some(url) if !url.is_empty() => Location::Url(url.clone()),
            _ => Location::in_data_dir(&inputs.data_dir),
        };
        if matches!(location, Location::SqliteFile(_)) {
            create_private_dir(&inputs.data_dir)?;
        }
        let keyring = load_keyring(&inputs.data_dir, inputs.production)?;
        Ok(Self { location, keyring })
    }
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

fn load_keyring(data_dir: &Path, production: bool) -> Result<Keyring, Error> {
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
    // Keys given in a variable are not shown to be kept anywhere else: a rotation refuses to
    // rewrap the vault under such a primary key without the operator's word.
    if let Some(list) = list {
        return Ok(Keyring::parse_list(&list, "KEYWARD_MASTER_KEYS")?.primary_only_in_environment());
    }
    if let Some(b64) = single {
        let key = MasterKey::from_base64(default_kid()?, &b64, "KEYWARD_MASTER_KEY")?;
        return Ok(Keyring::new(vec![key], "KEYWARD_MASTER_KEY")?.primary_only_in_environment());
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
        // A bare key (id `default`), or `KID:BASE64[,KID:BASE64...]` as `keyward master-key
        // rotate --new-key-file` writes it.
        if text.contains(':') {
            return Ok(Keyring::parse_list(text.trim(), "KEYWARD_MASTER_KEY_FILE")?);
        }
        let key = MasterKey::from_base64(default_kid()?, &text, "KEYWARD_MASTER_KEY_FILE")?;
        return Ok(Keyring::new(vec![key], "KEYWARD_MASTER_KEY_FILE")?);
    }
    if production {
        return Err(config_err(
            "no master key configured: set KEYWARD_MASTER_KEYS, KEYWARD_MASTER_KEY or KEYWARD_MASTER_KEY_FILE \
             (--production refuses the development key)",
        ));
    }
    dev_keyring(data_dir)
}

/// The development key: created on first use in the data directory, mode 0600, with a warning
/// every time it is used (as Vault's dev mode does).
fn dev_keyring(data_dir: &Path) -> Result<Keyring, Error> {
    let path: PathBuf = data_dir.join(DEV_KEY_FILE);
    if !path.exists() {
        if data_dir.join("keyward.db").exists() {
            // A new key would leave everything already stored undecryptable.
            return Err(config_err(format!(
                "{} holds a vault but no development key ({DEV_KEY_FILE}): restore the key file, \
                 or set KEYWARD_MASTER_KEY(S) to the key the vault was made with",
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
    tracing::warn!(
        path = %path.display(),
        "no master key configured: using a DEVELOPMENT key stored beside the data. \
         Anyone who can read the data directory can decrypt it. For real use, move to a key of \
         your own: keyward master-key rotate --new-key-file PATH, then KEYWARD_MASTER_KEY_FILE=PATH."
    );
    let source = format!("development key file {}", path.display());
    let key = MasterKey::from_base64(KeyId::new(DEV_KID)?, &text, &source)?;
    Ok(Keyring::new(vec![key], &source)?)
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
