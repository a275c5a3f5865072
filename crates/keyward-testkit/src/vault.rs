//! A test vault: SQLite in a temporary directory, under a fixed test master key.

use keyward_crypto::{KeyId, Keyring, MasterKey};
use keyward_store::{Location, Vault, VaultOptions};

/// The fixed bytes of the test master key `k1` (tests only: never a real key).
pub const TEST_KEY_BYTES: [u8; 32] = [5; 32];

/// A keyring of one test master key, `k1`.
///
/// # Panics
///
/// Never with these constants.
pub fn keyring() -> Keyring {
    #[allow(clippy::unwrap_used)]
    Keyring::new(
        vec![MasterKey::from_bytes(
            KeyId::new("k1").unwrap(),
            &TEST_KEY_BYTES,
        )],
        "test",
    )
    .unwrap()
}

/// A vault on SQLite in a temporary directory, which lives as long as the [`TestVault`].
#[derive(Debug)]
pub struct TestVault {
    /// The vault.
    pub vault: Vault,
    /// Where its files are (removed when dropped).
    pub dir: tempfile::TempDir,
}

impl TestVault {
    /// Opens a fresh vault.
    ///
    /// # Panics
    ///
    /// When the vault cannot be made: the test cannot go on.
    pub async fn open() -> Self {
        Self::open_with(VaultOptions::default()).await
    }

    /// Opens a fresh vault with `options`.
    ///
    /// # Panics
    ///
    /// When the vault cannot be made: the test cannot go on.
    pub async fn open_with(options: VaultOptions) -> Self {
        #[allow(clippy::unwrap_used)]
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&Location::in_data_dir(dir.path()), keyring(), options)
            .await
            .unwrap_or_else(|e| panic!("cannot open a test vault: {e}"));
        TestVault { vault, dir }
    }
}
