//! A test vault: SQLite in a temporary directory (or a PostgreSQL schema of its own), under a
//! fixed test master key.

use keyward_crypto::{KeyId, Keyring, MasterKey};
use keyward_store::{Location, Vault, VaultOptions};

use crate::PgSchema;

/// The fixed bytes of the test master key `k1` (tests only: never a real key).
pub const TEST_KEY_BYTES: [u8; 32] = [5; 32];

/// A keyring of one test master key, `k1`.
///
/// # Panics
///
/// Never with these constants.
pub fn keyring() -> Keyring {
    keyring_of(&[("k1", TEST_KEY_BYTES[0])])
}

/// A keyring of test master keys, each `(id, byte)` a key of 32 times that byte, the first the
/// primary: `keyring_of(&[("k2", 2), ("k1", 1)])` is a ring rotated from `k1` to `k2`.
///
/// # Panics
///
/// When an id is not a key id, or the list is empty or names an id twice.
pub fn keyring_of(keys: &[(&str, u8)]) -> Keyring {
    Keyring::new(
        keys.iter()
            .map(|(kid, byte)| {
                let kid = KeyId::new(kid).unwrap_or_else(|e| panic!("key id {kid:?}: {e}"));
                MasterKey::from_bytes(kid, &[*byte; 32])
            })
            .collect(),
        "test",
    )
    .unwrap_or_else(|e| panic!("a test keyring: {e}"))
}

/// A vault under [`keyring`], which lives as long as the [`TestVault`]: on SQLite in a
/// temporary directory, or on PostgreSQL in a schema of its own.
#[derive(Debug)]
pub struct TestVault {
    /// The vault.
    pub vault: Vault,
    /// Where its files are (removed when dropped); empty on PostgreSQL.
    pub dir: tempfile::TempDir,
    /// Its schema, on PostgreSQL.
    pub schema: Option<PgSchema>,
}

impl TestVault {
    /// Opens a fresh vault on SQLite.
    ///
    /// # Panics
    ///
    /// When the vault cannot be made: the test cannot go on.
    pub async fn open() -> Self {
        Self::open_with(VaultOptions::default()).await
    }

    /// Opens a fresh vault on SQLite with `options`.
    ///
    /// # Panics
    ///
    /// When the vault cannot be made: the test cannot go on.
    pub async fn open_with(options: VaultOptions) -> Self {
        let dir = tempdir();
        let vault = Vault::open(&Location::in_data_dir(dir.path()), keyring(), options)
            .await
            .unwrap_or_else(|e| panic!("cannot open a test vault: {e}"));
        TestVault {
            vault,
            dir,
            schema: None,
        }
    }

    /// Opens a fresh vault on the test PostgreSQL server, in a schema named `PREFIX_<random>`;
    /// `None` means "skip" (see [`PgSchema::create`]).
    ///
    /// # Panics
    ///
    /// When the vault cannot be made, or PostgreSQL is required but not there.
    pub async fn postgres(prefix: &str) -> Option<Self> {
        let schema = PgSchema::create(prefix).await?;
        let vault = Vault::open(
            &Location::Url(schema.url()),
            keyring(),
            VaultOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot open a test vault on PostgreSQL: {e}"));
        Some(TestVault {
            vault,
            dir: tempdir(),
            schema: Some(schema),
        })
    }

    /// Every stored byte, for canary scans: the SQLite files, or a text dump of the PostgreSQL
    /// schema's tables.
    pub async fn stored_bytes(&self) -> Vec<u8> {
        if let Some(schema) = &self.schema {
            return schema.dump().await;
        }
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
        out
    }

    /// Closes the vault and drops its schema (on PostgreSQL). A test that fails before this
    /// leaves its schema behind, to be looked at.
    pub async fn close(self) {
        self.vault.close().await;
        if let Some(schema) = self.schema {
            schema.drop_schema().await;
        }
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}"))
}
