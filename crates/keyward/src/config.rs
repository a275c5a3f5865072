//! Configuration in two stages: raw values (flags and `KEYWARD_*` variables, read by clap) are
//! turned once into a validated [`Config`].

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use keyward_crypto::{KeyId, Keyring, MasterKey, generate_master_key_base64};
use keyward_store::Location;
use zeroize::Zeroizing;

use crate::cli::Global;

/// Validated configuration.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) location: Location,
    pub(crate) keyring: Keyring,
}

/// The key id of a key given by `KEYWARD_MASTER_KEY` or `KEYWARD_MASTER_KEY_FILE`.
const SINGLE_KID: &str = "default";
/// The key id of the development key.
const DEV_KID: &str = "dev";
const DEV_KEY_FILE: &str = "master.key";

impl Config {
    pub(crate) fn from_global(g: &Global) -> Result<Self> {
        let location = match &g.database_url {
            Some(url) if !url.is_empty() => Location::Url(url.clone()),
            _ => Location::in_data_dir(&g.data_dir),
        };
        if matches!(location, Location::SqliteFile(_)) {
            create_private_dir(&g.data_dir)?;
        }
        let keyring = load_keyring(&g.data_dir, g.production)?;
        Ok(Self { location, keyring })
    }
}

/// A non-empty variable; the copy is wiped when dropped (key material passes through here).
fn env(name: &str) -> Option<Zeroizing<String>> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(Zeroizing::new)
}

fn load_keyring(data_dir: &Path, production: bool) -> Result<Keyring> {
    let list = env("KEYWARD_MASTER_KEYS");
    let single = env("KEYWARD_MASTER_KEY");
    let file = env("KEYWARD_MASTER_KEY_FILE");
    let given = [list.is_some(), single.is_some(), file.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if given > 1 {
        bail!(
            "set only one of KEYWARD_MASTER_KEYS, KEYWARD_MASTER_KEY and KEYWARD_MASTER_KEY_FILE"
        );
    }
    let default_kid = || KeyId::new(SINGLE_KID).context("the built-in key id is valid");
    if let Some(list) = list {
        return Ok(Keyring::parse_list(&list, "KEYWARD_MASTER_KEYS")?);
    }
    if let Some(b64) = single {
        let key = MasterKey::from_base64(default_kid()?, &b64, "KEYWARD_MASTER_KEY")?;
        return Ok(Keyring::new(vec![key], "KEYWARD_MASTER_KEY")?);
    }
    if let Some(path) = file {
        // A path is not secret; keep a plain copy for messages.
        let path: String = path.as_str().to_owned();
        let text = Zeroizing::new(std::fs::read_to_string(&path).with_context(|| {
            format!("KEYWARD_MASTER_KEY_FILE: cannot read the master key file {path}")
        })?);
        warn_if_shared(Path::new(&path));
        let key = MasterKey::from_base64(default_kid()?, &text, "KEYWARD_MASTER_KEY_FILE")?;
        return Ok(Keyring::new(vec![key], "KEYWARD_MASTER_KEY_FILE")?);
    }
    if production {
        bail!(
            "no master key configured: set KEYWARD_MASTER_KEYS, KEYWARD_MASTER_KEY or KEYWARD_MASTER_KEY_FILE \
             (--production refuses the development key)"
        );
    }
    dev_keyring(data_dir)
}

/// The development key: created on first use in the data directory, mode 0600, with a warning
/// every time it is used (as Vault's dev mode does).
fn dev_keyring(data_dir: &Path) -> Result<Keyring> {
    let path: PathBuf = data_dir.join(DEV_KEY_FILE);
    if !path.exists() {
        create_private_dir(data_dir)?;
        let key = generate_master_key_base64()?;
        write_private(&path, key.as_bytes())?;
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the development key {}", path.display()))?,
    );
    tracing::warn!(
        path = %path.display(),
        "no master key configured: using a DEVELOPMENT key stored beside the data. \
         Anyone who can read the data directory can decrypt it. Set KEYWARD_MASTER_KEY for real use."
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
fn create_private_dir(dir: &Path) -> Result<()> {
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
    builder
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// Creates `path` readable by its owner only, refusing to overwrite.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}
