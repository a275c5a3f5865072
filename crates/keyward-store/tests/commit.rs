//! A write whose commit never got an answer: PostgreSQL behind a proxy that cuts the connection
//! at the moment the client sends `COMMIT`. The vault must say the outcome is unknown and name
//! the record, never report a plain failure (or success).

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_store::{Location, Vault, VaultError, VaultOptions};
use keyward_testkit::{PgSchema, keyring};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Forwards 127.0.0.1:port to `upstream`; once `armed`, a client packet holding a simple query
/// `COMMIT` is not forwarded and both sides are closed instead.
async fn commit_cutting_proxy(upstream: String, armed: Arc<AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let armed = armed.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let packet = &buf[..n];
                    if armed.load(Ordering::SeqCst) && packet.windows(7).any(|w| w == b"COMMIT\0") {
                        break;
                    }
                    if sw.write_all(packet).await.is_err() {
                        break;
                    }
                }
                down.abort();
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_off_is_an_unknown_outcome_that_names_the_record() {
    let Some(schema) = PgSchema::create("kw_commit").await else {
        return;
    };
    // postgres://user@host:port/db?options... → the same through the proxy.
    let url = schema.url();
    let after_at = url.split_once('@').unwrap().1;
    let (host_port, rest) = after_at.split_once('/').unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let port = commit_cutting_proxy(host_port.to_owned(), armed.clone()).await;
    // In plain text, so that the proxy can see the COMMIT go by.
    let proxied = format!(
        "{}@127.0.0.1:{port}/{}",
        url.split_once('@').unwrap().0,
        rest.replacen('?', "?sslmode=disable&", 1)
    );
    let vault = Vault::open(&Location::Url(proxied), keyring(), VaultOptions::default())
        .await
        .unwrap();
    let org = OrgId::new("acme").unwrap();
    vault.create_org(&org, None, "test").await.unwrap();

    armed.store(true, Ordering::SeqCst);
    let new = NewCredential::new(
        org.clone(),
        Provider::get("openai").unwrap(),
        CredentialName::new("cut").unwrap(),
        Some("sk-proj-COMMITCUT-0123456789abcdef".into()),
    );
    let err = vault.add_credential(new, "test").await.unwrap_err();
    let VaultError::OutcomeUnknown { what, id } = &err else {
        panic!("expected an unknown outcome, got {err:?}");
    };
    assert_eq!(*what, "credential");
    assert!(err.to_string().contains(id.as_str()), "{err}");
    assert!(err.is_unavailable());
    assert!(
        !vault.store_available(),
        "the vault knows the store is away"
    );

    // Looked up directly: the COMMIT never reached the server, so the write is not there, and
    // the id the caller was given is the one to look for.
    armed.store(false, Ordering::SeqCst);
    let direct = Vault::open(
        &Location::Url(schema.url()),
        keyring(),
        VaultOptions::default(),
    )
    .await
    .unwrap();
    let id = keyward_core::CredentialId::new(id).unwrap();
    assert!(matches!(
        direct.get_credential(&id).await,
        Err(VaultError::NotFound(_))
    ));
    direct.close().await;
    vault.close().await;
    schema.drop_schema().await;
}
