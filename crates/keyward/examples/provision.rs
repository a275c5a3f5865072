//! Using Keyward from Rust: resolve a key, build an SDK configuration, and start a child
//! process with the provider's environment variables.
//!
//! ```sh
//! cargo run -p keyward --example provision
//! ```
//!
//! To stay runnable anywhere, the example makes a throwaway vault in a temporary directory and
//! stores one key in it. A real program opens the configured vault instead, with
//! `KeyProvider::from_env().await?` (the same `KEYWARD_*` variables as the CLI).

use std::process::Command;

use keyward::KeyProvider;
use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_crypto::Keyring;
use keyward_store::{Location, Vault, VaultOptions};
use secrecy::ExposeSecret as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A throwaway vault with one OpenAI key for organization `acme`.
    let dir = tempfile::tempdir()?;
    let master_key = keyward_crypto::generate_master_key_base64()?;
    let keyring = Keyring::parse_list(&format!("example:{master_key}"), "example")?;
    let vault = Vault::open(
        &Location::in_data_dir(dir.path()),
        keyring,
        VaultOptions::default(),
    )
    .await?;
    let acme = OrgId::new("acme")?;
    vault.create_org(&acme, Some("Acme"), "example").await?;
    let mut cred = NewCredential::new(
        acme,
        Provider::get("openai")?,
        CredentialName::new("prod")?,
        Some("sk-example-0123456789abcdefWXYZ".into()),
    );
    cred.fields.insert(
        "base_url".into(),
        "http://127.0.0.1:8080/gateway/openai/v1".into(),
    );
    vault.add_credential(cred, "example").await?;

    // What a program does: ask for keys (every resolution is audited as this actor).
    let keys = KeyProvider::from_vault(vault).with_actor("example-app");

    // 1. A configuration object for an SDK client.
    let config = keys.provider_config("acme", "openai").await?;
    println!("provider:  {}", config.provider);
    println!("base_url:  {}", config.base_url.as_deref().unwrap_or("-"));
    println!(
        "api_key:   {} characters (never print the key itself)",
        config
            .api_key
            .as_ref()
            .map_or(0, |k| k.expose_secret().len())
    );

    // 2. A child process with the provider's variables, leaving this process's own
    //    environment untouched.
    let env = keys.env_map("acme", "openai").await?;
    let mut child = Command::new("sh");
    child.args(["-c", "echo \"child sees OPENAI_BASE_URL=$OPENAI_BASE_URL and a key of ${#OPENAI_API_KEY} characters\""]);
    let files = env.apply(&mut child)?;
    let status = child.status()?;
    files.close()?; // removes any key files written for the child (none for OpenAI)
    println!("child exited with {status}");
    println!(
        "this process has OPENAI_API_KEY: {}",
        std::env::var_os("OPENAI_API_KEY").is_some()
    );
    Ok(())
}
