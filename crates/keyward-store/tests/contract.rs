//! The store contract: one suite, run against SQLite and PostgreSQL.
//!
//! PostgreSQL tests use `KEYWARD_TEST_DATABASE_URL` (each test gets a schema of its own). When it
//! is unset they are skipped, unless `KEYWARD_TEST_REQUIRE_POSTGRES=1`, which makes a missing
//! server a failure (CI sets it).

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use keyward_core::audit::{Category, EventFilter, Outcome};
use keyward_core::credential::{
    CredentialStatus, CredentialUpdate, CredentialView, FormatCheck, Modality, NewCredential,
};
use keyward_core::resolve::{ResolveRequest, Source, Strategy};
use keyward_core::{CredentialName, OrgId, Provider, VarName};
use keyward_crypto::Keyring;
use keyward_store::{Backend, EnvSource, Location, Vault, VaultError, VaultOptions};
use keyward_testkit::{PgSchema, contains, keyring_of};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Executor, Row};

const ACTOR: &str = "test:contract";
const CANARY_OPENAI: &str = "sk-proj-CANARY7f3a9c1e5b2d8f4a6c0e9b7d";
const CANARY_ANTHROPIC: &str = "sk-ant-api03-CANARY2b4d6f8a0c1e3f5a7b9c";

/// One database to run a contract test on.
struct Db {
    location: Location,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
    schema: Option<PgSchema>,
}

impl Db {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            location: Location::in_data_dir(dir.path()),
            backend: Backend::Sqlite,
            _dir: Some(dir),
            schema: None,
        }
    }

    async fn postgres() -> Option<Self> {
        let schema = PgSchema::create("kw_test").await?;
        Some(Self {
            location: Location::Url(schema.url()),
            backend: Backend::Postgres,
            _dir: None,
            schema: Some(schema),
        })
    }

    async fn open(&self, keyring: Keyring) -> Vault {
        self.open_with(keyring, HashMap::new()).await
    }

    async fn open_with(&self, keyring: Keyring, env: HashMap<String, String>) -> Vault {
        let vault = Vault::open(
            &self.location,
            keyring,
            VaultOptions {
                env: EnvSource::Map(Arc::new(env)),
                ..VaultOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(vault.backend(), self.backend);
        vault
    }

    async fn cleanup(self) {
        if let Some(schema) = self.schema {
            schema.drop_schema().await;
        }
    }
}

/// The ring most tests open with; the rotation tests add `k2` to it.
fn k1() -> Keyring {
    keyring_of(&[("k1", 1)])
}

fn org(s: &str) -> OrgId {
    OrgId::new(s).unwrap()
}

fn new_cred(org_id: &str, provider: &str, name: &str, key: &str) -> NewCredential {
    NewCredential::new(
        org(org_id),
        Provider::get(provider).unwrap(),
        CredentialName::new(name).unwrap(),
        Some(SecretString::from(key)),
    )
}

async fn setup_orgs(v: &Vault) {
    v.create_org(&org("acme"), Some("Acme"), ACTOR)
        .await
        .unwrap();
    v.create_org(&org("globex"), None, ACTOR).await.unwrap();
}

fn req(org_id: &str, provider: &str) -> ResolveRequest {
    ResolveRequest::new(org(org_id), Provider::get(provider).unwrap())
}

async fn resolve_key(v: &Vault, r: &ResolveRequest) -> Result<String, VaultError> {
    let got = v.resolve(r, ACTOR).await?;
    Ok(got
        .secret
        .map(|s| s.expose_secret().to_owned())
        .unwrap_or_default())
}

/// Every byte the database holds, as text: table rows (and on SQLite, the raw files too).
async fn everything_stored(db: &Db, v: &Vault) -> Vec<u8> {
    let mut out = Vec::new();
    for table in [
        "organizations",
        "credentials",
        "config_vars",
        "vault_keys",
        "audit_events",
        "audit_head",
    ] {
        let sql = match db.backend {
            Backend::Postgres => format!("SELECT CAST(t.* AS TEXT) AS r FROM {table} t"),
            Backend::Sqlite => format!("SELECT * FROM {table}"),
        };
        let rows = v.pool().fetch_all(sqlx::AssertSqlSafe(sql)).await.unwrap();
        for row in rows {
            use sqlx::Column as _;
            for col in row.columns() {
                let i = col.ordinal();
                if let Ok(Some(s)) = row.try_get::<Option<String>, _>(i) {
                    out.extend_from_slice(s.as_bytes());
                } else if let Ok(Some(b)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                    out.extend_from_slice(&b);
                }
                out.push(b'\n');
            }
        }
    }
    if let Location::SqliteFile(path) = &db.location {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            if let Ok(bytes) = std::fs::read(&p) {
                out.extend_from_slice(&bytes);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------

async fn organizations_are_created_listed_and_unique(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let orgs = v.list_orgs().await.unwrap();
    assert_eq!(
        orgs.iter()
            .map(|o| (o.id.as_str(), o.name.as_str()))
            .collect::<Vec<_>>(),
        vec![("acme", "Acme"), ("globex", "globex")]
    );
    let err = v.create_org(&org("acme"), None, ACTOR).await.unwrap_err();
    assert!(matches!(err, VaultError::AlreadyExists(_)), "{err}");
    v.close().await;
    db.cleanup().await;
}

async fn credentials_are_stored_sealed_and_listed_masked(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let a = v
        .add_credential(new_cred("acme", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();
    let b = v
        .add_credential(
            new_cred("acme", "anthropic", "main", CANARY_ANTHROPIC),
            ACTOR,
        )
        .await
        .unwrap();
    assert_eq!(a.key_hint, "sk-...9b7d");
    assert_eq!(b.key_hint, "sk-ant-...7b9c");
    assert_eq!(
        (a.version, a.status, a.kid.as_str()),
        (1, CredentialStatus::Ok, "k1")
    );
    let listed = v.list_credentials(Some(&org("acme")), None).await.unwrap();
    assert_eq!(listed.len(), 2);
    let json = serde_json::to_string(&listed).unwrap();
    assert!(!json.contains("CANARY"), "a listing holds a secret: {json}");
    assert_eq!(
        v.list_credentials(None, Some(Provider::get("openai").unwrap()))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        v.list_credentials(Some(&org("globex")), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        resolve_key(&v, &req("acme", "openai")).await.unwrap(),
        CANARY_OPENAI
    );

    let stored = everything_stored(&db, &v).await;
    assert!(stored.len() > 1000, "the scan read nothing");
    assert!(
        contains(&stored, "sk-...9b7d"),
        "the scan misses stored text"
    );
    assert!(
        !contains(&stored, "CANARY"),
        "a secret is stored in plain text"
    );

    let dup = v
        .add_credential(new_cred("acme", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap_err();
    assert!(matches!(dup, VaultError::AlreadyExists(_)), "{dup}");
    let no_org = v
        .add_credential(new_cred("nope", "openai", "x", CANARY_OPENAI), ACTOR)
        .await
        .unwrap_err();
    assert!(matches!(no_org, VaultError::NotFound(_)), "{no_org}");
    v.close().await;
    db.cleanup().await;
}

async fn bad_keys_are_refused_unless_the_check_is_skipped(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let err = v
        .add_credential(
            new_cred("acme", "anthropic", "x", "sk-proj-not-anthropic-CANARY"),
            ACTOR,
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("'sk-ant-'") && !msg.contains("CANARY"),
        "{msg}"
    );
    let err = v
        .add_credential(
            new_cred("acme", "openai", "x", "sk-with space CANARY"),
            ACTOR,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("whitespace"), "{err}");
    let mut skipped = new_cred("acme", "anthropic", "x", "  legacy-key-format-0123456789  ");
    skipped.format_check = FormatCheck::Skip;
    let view = v.add_credential(skipped, ACTOR).await.unwrap();
    assert_eq!(
        resolve_key(&v, &req("acme", "anthropic")).await.unwrap(),
        "legacy-key-format-0123456789"
    );
    assert_eq!(view.key_hint, "leg...6789");
    // Nothing was half-written by the refusals: one credential, one create event for it.
    assert_eq!(v.list_credentials(None, None).await.unwrap().len(), 1);
    v.close().await;
    db.cleanup().await;
}

async fn provider_fields_are_checked(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let mut azure = new_cred(
        "acme",
        "azure_openai",
        "eu",
        "0123456789abcdef0123456789abcdef",
    );
    let err = v.add_credential(azure.clone(), ACTOR).await.unwrap_err();
    assert!(err.to_string().contains("endpoint"), "{err}");
    azure
        .fields
        .insert("endpoint".into(), "https://eu.openai.azure.com".into());
    azure
        .fields
        .insert("api_version".into(), "2024-10-21".into());
    let view = v.add_credential(azure, ACTOR).await.unwrap();
    assert_eq!(view.fields["endpoint"], "https://eu.openai.azure.com");
    let got = v
        .resolve(&req("acme", "azure_openai"), ACTOR)
        .await
        .unwrap();
    assert_eq!(got.fields["api_version"], "2024-10-21");
    let mut bad = new_cred("acme", "openai", "x", CANARY_OPENAI);
    bad.fields.insert("region".into(), "eu".into());
    assert!(v.add_credential(bad, ACTOR).await.is_err());
    v.close().await;
    db.cleanup().await;
}

async fn keyless_and_key_file_providers_resolve_sensibly(db: Db) {
    let env = HashMap::from([
        (
            "OLLAMA_API_BASE".to_string(),
            "http://127.0.0.1:11434".to_string(),
        ),
        (
            "GOOGLE_APPLICATION_CREDENTIALS".to_string(),
            "/etc/sa.json".to_string(),
        ),
        ("VERTEX_PROJECT".to_string(), "proj-1".to_string()),
    ]);
    let v = db.open_with(k1(), env).await;
    setup_orgs(&v).await;
    // From the environment: Ollama by its base URL, Vertex by its key file's path.
    let ollama = v.resolve(&req("acme", "ollama"), ACTOR).await.unwrap();
    assert!(ollama.secret.is_none());
    assert_eq!(ollama.fields["base_url"], "http://127.0.0.1:11434");
    let vertex = v.resolve(&req("acme", "vertex"), ACTOR).await.unwrap();
    assert!(vertex.secret.is_none());
    assert_eq!(vertex.fields["credentials_file"], "/etc/sa.json");
    assert_eq!(vertex.fields["project"], "proj-1");

    // Stored: an Ollama credential needs no key; a Vertex one holds the service-account JSON.
    let mut local = NewCredential::new(
        org("globex"),
        Provider::get("ollama").unwrap(),
        CredentialName::new("gpu-box").unwrap(),
        None,
    );
    local
        .fields
        .insert("base_url".into(), "http://127.0.0.1:9999".into());
    let view = v.add_credential(local, ACTOR).await.unwrap();
    assert_eq!(view.key_hint, "(no key)");
    let got = v.resolve(&req("globex", "ollama"), ACTOR).await.unwrap();
    assert_eq!(
        (got.secret.is_none(), got.fields["base_url"].as_str()),
        (true, "http://127.0.0.1:9999")
    );
    let sa = r#"{"type":"service_account","project_id":"p","private_key":"-----BEGIN PRIVATE KEY-----\nCANARYpem\n-----END PRIVATE KEY-----\n","client_email":"sa@p.iam.gserviceaccount.com"}"#;
    let view = v
        .add_credential(new_cred("globex", "vertex", "sa", sa), ACTOR)
        .await
        .unwrap();
    assert_eq!(view.key_hint, "sa:sa@p.iam.gserviceaccount.com");
    let got = v.resolve(&req("globex", "vertex"), ACTOR).await.unwrap();
    assert_eq!(got.secret.unwrap().expose_secret(), sa);
    let err = v
        .add_credential(new_cred("globex", "openai", "none", ""), ACTOR)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(!contains(&everything_stored(&db, &v).await, "CANARY"));
    v.close().await;
    db.cleanup().await;
}

async fn resolution_follows_activity_env_fallback_and_names_what_it_looked_for(db: Db) {
    let env = HashMap::from([(
        "ANTHROPIC_API_KEY".to_string(),
        "sk-ant-from-env".to_string(),
    )]);
    let v = db.open_with(k1(), env).await;
    setup_orgs(&v).await;
    let a = v
        .add_credential(new_cred("acme", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();

    // Organizations are isolated.
    let err = resolve_key(&v, &req("globex", "openai")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "organization 'globex' has no active OpenAI credential and OPENAI_API_KEY is not set; an admin can add one (keyward cred add --org globex --provider openai) or activate one"
    );
    // A deactivated credential is skipped; reactivated, it answers again.
    v.set_credential_active(&a.id, false, ACTOR).await.unwrap();
    assert!(resolve_key(&v, &req("acme", "openai")).await.is_err());
    v.set_credential_active(&a.id, true, ACTOR).await.unwrap();
    assert_eq!(
        resolve_key(&v, &req("acme", "openai")).await.unwrap(),
        CANARY_OPENAI
    );

    // The environment answers when the vault has nothing, unless turned off.
    let got = v.resolve(&req("acme", "anthropic"), ACTOR).await.unwrap();
    assert_eq!(got.secret.unwrap().expose_secret(), "sk-ant-from-env");
    assert_eq!(
        got.source,
        Source::Environment {
            variable: "ANTHROPIC_API_KEY".into()
        }
    );
    assert_eq!(got.fields["base_url"], "https://api.anthropic.com");
    let mut off = req("acme", "anthropic");
    off.env_fallback = keyward_core::resolve::EnvFallback::Off;
    let err = resolve_key(&v, &off).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("organization 'acme' has no active Anthropic credential;"),
        "{err}"
    );
    // The organization's own setting decides where the caller leaves it to it: off beats the
    // CLI's default, on beats a server's, and an explicit off stays off.
    use keyward_core::resolve::EnvFallback;
    v.set_org_env_fallback(&org("acme"), Some(false), ACTOR)
        .await
        .unwrap();
    assert!(resolve_key(&v, &req("acme", "anthropic")).await.is_err());
    v.set_org_env_fallback(&org("acme"), Some(true), ACTOR)
        .await
        .unwrap();
    let mut server = req("acme", "anthropic");
    server.env_fallback = EnvFallback::Org { default: false };
    assert_eq!(resolve_key(&v, &server).await.unwrap(), "sk-ant-from-env");
    assert!(resolve_key(&v, &off).await.is_err());
    assert_eq!(
        v.get_org(&org("acme")).await.unwrap().env_fallback,
        Some(true)
    );
    let mut globex_server = req("globex", "anthropic");
    globex_server.env_fallback = EnvFallback::Org { default: false };
    assert!(
        resolve_key(&v, &globex_server).await.is_err(),
        "another organization keeps the server's default"
    );
    v.set_org_env_fallback(&org("acme"), None, ACTOR)
        .await
        .unwrap();

    // An unknown organization is an error, not a silent fallback.
    let err = resolve_key(&v, &req("nope", "anthropic"))
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::NotFound(_)), "{err}");

    // Resolution by name and modality.
    let mut emb = new_cred(
        "acme",
        "openai",
        "embeddings-only",
        "sk-embeddings-0123456789abcd",
    );
    emb.modalities = vec![Modality::Embeddings];
    emb.priority = 1;
    v.add_credential(emb, ACTOR).await.unwrap();
    let mut chat = req("acme", "openai");
    chat.modality = Some(Modality::Chat);
    assert_eq!(resolve_key(&v, &chat).await.unwrap(), CANARY_OPENAI);
    let mut named = req("acme", "openai");
    named.name = Some(CredentialName::new("embeddings-only").unwrap());
    assert_eq!(
        resolve_key(&v, &named).await.unwrap(),
        "sk-embeddings-0123456789abcd"
    );

    // Every resolution is audited, failures too, and no event holds a secret.
    let events = v
        .list_events(
            &EventFilter {
                action: Some("resolve".into()),
                ..EventFilter::default()
            },
            100,
        )
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.outcome == Outcome::Failure));
    assert!(events.iter().all(|e| e.category == Category::SecretAccess));
    assert_eq!(events.len(), 12);
    let json = serde_json::to_string(&events).unwrap();
    assert!(
        !json.contains("CANARY") && !json.contains("sk-ant-from-env"),
        "{json}"
    );
    // Resolution records when a credential was last used.
    let used = v.get_credential(&a.id).await.unwrap();
    assert!(used.last_used_at.is_some());
    assert_eq!(
        used.version, 3,
        "last-used bookkeeping must not bump the version"
    );
    v.close().await;
    db.cleanup().await;
}

async fn strategies_pick_by_priority_turns_and_weight(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    for (name, prio, weight) in [("a", 1, 0), ("b", 2, 3), ("c", 3, 1)] {
        let mut c = new_cred(
            "acme",
            "openai",
            name,
            &format!("sk-key-{name}-0123456789abcdef"),
        );
        c.priority = prio;
        c.weight = weight;
        v.add_credential(c, ACTOR).await.unwrap();
    }
    let name_of = |s: &Source| match s {
        Source::Vault { name, .. } => name.to_string(),
        Source::Environment { .. } => panic!("from env"),
    };
    let mut r = req("acme", "openai");
    for _ in 0..3 {
        assert_eq!(name_of(&v.resolve_unaudited(&r).await.unwrap().source), "a");
    }
    r.strategy = Some(Strategy::RoundRobin);
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(name_of(&v.resolve_unaudited(&r).await.unwrap().source));
    }
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b", "c", "c"]);
    r.strategy = Some(Strategy::Weighted);
    let mut counts = HashMap::new();
    for _ in 0..400 {
        *counts
            .entry(name_of(&v.resolve_unaudited(&r).await.unwrap().source))
            .or_insert(0) += 1;
    }
    assert_eq!(counts.get("a"), None, "weight 0 is never drawn");
    let (b, c) = (counts["b"], counts["c"]);
    assert!(b > 2 * c, "weights 3:1 drew b={b} c={c}");
    // A request that names no strategy takes the organization's, and the gateway's candidate
    // list follows it too.
    let acme = OrgId::new("acme").unwrap();
    let org = v
        .set_org_strategy(&acme, Strategy::RoundRobin, ACTOR)
        .await
        .unwrap();
    assert_eq!(org.strategy, Strategy::RoundRobin);
    r.strategy = None;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(name_of(&v.resolve_unaudited(&r).await.unwrap().source));
    }
    seen.sort();
    assert_eq!(
        seen,
        ["a", "a", "b", "b", "c", "c"],
        "the organization's round robin"
    );
    let openai = Provider::get("openai").unwrap();
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let c = v
            .gateway_candidates(
                &acme,
                openai,
                std::time::Duration::ZERO,
                keyward_core::resolve::EnvFallback::Off,
            )
            .await
            .unwrap();
        assert_eq!(c.len(), 3);
        firsts.push(c.iter().next().unwrap().credential().unwrap().clone());
    }
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 3, "the gateway takes turns too");
    assert_eq!(
        v.list_orgs().await.unwrap()[0].strategy,
        Strategy::RoundRobin,
        "listed with it"
    );
    v.close().await;
    db.cleanup().await;
}

async fn concurrent_updates_never_lose_a_write(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let c = v
        .add_credential(new_cred("acme", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();

    // Eight writers race from the same version: exactly one wins, the rest are told.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (v, id) = (v.clone(), c.id.clone());
        tasks.push(tokio::spawn(async move {
            let u = CredentialUpdate {
                priority: Some(i),
                ..CredentialUpdate::default()
            };
            v.update_credential(&id, Some(1), u, ACTOR).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(view) => {
                won += 1;
                assert_eq!(view.version, 2);
            }
            Err(VaultError::Conflict { expected: 1, .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won, 1);

    // Eight read-modify-write loops that retry on conflict: every increment survives.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (v, id) = (v.clone(), c.id.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let cur = v.get_credential(&id).await.unwrap();
                let u = CredentialUpdate {
                    weight: Some(cur.weight + 1),
                    ..CredentialUpdate::default()
                };
                match v.update_credential(&id, Some(cur.version), u, ACTOR).await {
                    Ok(_) => break,
                    Err(VaultError::Conflict { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let end = v.get_credential(&c.id).await.unwrap();
    assert_eq!(end.weight, 1 + 8);
    assert_eq!(end.version, 2 + 8);
    assert!(v.verify_events().await.unwrap().ok());
    v.close().await;
    db.cleanup().await;
}

async fn key_rotation_of_a_credential_is_seen_by_the_next_resolution(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let c = v
        .add_credential(new_cred("acme", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();
    assert_eq!(
        resolve_key(&v, &req("acme", "openai")).await.unwrap(),
        CANARY_OPENAI
    );
    let u = CredentialUpdate {
        secret: Some(SecretString::from("sk-rotated-0123456789abcdefwxyz")),
        name: Some(CredentialName::new("prod-2").unwrap()),
        ..CredentialUpdate::default()
    };
    let view = v.update_credential(&c.id, None, u, ACTOR).await.unwrap();
    assert_eq!(
        (view.key_hint.as_str(), view.name.as_str()),
        ("sk-...wxyz", "prod-2")
    );
    assert_eq!(
        resolve_key(&v, &req("acme", "openai")).await.unwrap(),
        "sk-rotated-0123456789abcdefwxyz"
    );
    let stale = v
        .update_credential(
            &c.id,
            Some(1),
            CredentialUpdate {
                priority: Some(5),
                ..CredentialUpdate::default()
            },
            ACTOR,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale,
            VaultError::Conflict {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{stale}"
    );
    v.delete_credential(&c.id, ACTOR).await.unwrap();
    assert!(resolve_key(&v, &req("acme", "openai")).await.is_err());
    assert!(matches!(
        v.get_credential(&c.id).await.unwrap_err(),
        VaultError::NotFound(_)
    ));
    v.close().await;
    db.cleanup().await;
}

async fn stored_ciphertexts_are_bound_to_provider_fields_and_name(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let mut c = new_cred("acme", "openai", "prod", CANARY_OPENAI);
    c.fields
        .insert("base_url".into(), "https://api.openai.com/v1".into());
    let c = v.add_credential(c, ACTOR).await.unwrap();
    let status = |v: Vault, id: keyward_core::CredentialId| async move {
        v.get_credential(&id).await.unwrap().status
    };

    // A legitimate change of a public field re-seals: the credential still opens, with the
    // new base URL, and keeps its master key and data key.
    let u = CredentialUpdate {
        fields: [(
            "base_url".to_string(),
            "https://proxy.internal/v1".to_string(),
        )]
        .into(),
        ..CredentialUpdate::default()
    };
    let after = v.update_credential(&c.id, None, u, ACTOR).await.unwrap();
    assert_eq!(after.status, CredentialStatus::Ok);
    let got = v.resolve(&req("acme", "openai"), ACTOR).await.unwrap();
    assert_eq!(got.fields["base_url"], "https://proxy.internal/v1");
    assert_eq!(got.secret.unwrap().expose_secret(), CANARY_OPENAI);

    // The same change made behind the vault's back, in the database: refused.
    let raw = |sql: &'static str| {
        let v = v.clone();
        let id = c.id.clone();
        async move {
            sqlx::query(sql)
                .bind(id.as_str())
                .execute(v.pool())
                .await
                .unwrap();
        }
    };
    raw("UPDATE credentials SET fields = '{\"base_url\":\"https://attacker.invalid\"}' WHERE id = $1").await;
    assert_eq!(
        status(v.clone(), c.id.clone()).await,
        CredentialStatus::Undecryptable
    );
    raw("UPDATE credentials SET fields = '{\"base_url\":\"https://proxy.internal/v1\"}' WHERE id = $1").await;
    assert_eq!(status(v.clone(), c.id.clone()).await, CredentialStatus::Ok);
    // Another provider with the same secret field name: refused.
    raw("UPDATE credentials SET provider = 'deepseek' WHERE id = $1").await;
    assert_eq!(
        status(v.clone(), c.id.clone()).await,
        CredentialStatus::Undecryptable
    );
    raw("UPDATE credentials SET provider = 'openai' WHERE id = $1").await;
    // A removed ciphertext: refused, not taken for "no key".
    raw("UPDATE credentials SET sealed_secret = NULL WHERE id = $1").await;
    assert_eq!(
        status(v.clone(), c.id.clone()).await,
        CredentialStatus::Undecryptable
    );

    // Two sensitive variables' names swapped: neither opens as the other.
    let a = VarName::new("A").unwrap();
    let b = VarName::new("B").unwrap();
    v.set_var(&a, None, &SecretString::from("value-a"), true, None, ACTOR)
        .await
        .unwrap();
    v.set_var(&b, None, &SecretString::from("value-b"), true, None, ACTOR)
        .await
        .unwrap();
    sqlx::query("UPDATE config_vars SET name = 'tmp' WHERE name = 'A'")
        .execute(v.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE config_vars SET name = 'A' WHERE name = 'B'")
        .execute(v.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE config_vars SET name = 'B' WHERE name = 'tmp'")
        .execute(v.pool())
        .await
        .unwrap();
    let err = v.get_var(&a, None, true, ACTOR).await.unwrap_err();
    assert!(matches!(err, VaultError::Undecryptable(_)), "{err}");
    let listed = v.list_vars(None).await.unwrap();
    assert!(
        listed
            .iter()
            .all(|x| x.status == CredentialStatus::Undecryptable)
    );
    // A value with a NUL byte is refused up front, alike on both databases.
    let err = v
        .set_var(
            &VarName::new("N").unwrap(),
            None,
            &SecretString::from("a\0b"),
            false,
            None,
            ACTOR,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::InvalidInput(_)), "{err}");
    v.close().await;
    db.cleanup().await;
}

async fn an_update_after_a_rotation_keeps_the_new_wrap(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let c = v
        .add_credential(new_cred("acme", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();
    v.close().await;
    let v = db.open(keyring_of(&[("k2", 2), ("k1", 1)])).await;
    let before = v.get_credential(&c.id).await.unwrap();
    let report = v.rotate_master_key(100, ACTOR, |_| {}).await.unwrap();
    assert_eq!((report.rewrapped, report.remaining), (2, 0));
    // An update based on the version read before the rotation: the rotation did not change
    // the version, so it applies, and it must not put the old wrap back.
    for u in [
        CredentialUpdate {
            priority: Some(7),
            ..CredentialUpdate::default()
        },
        CredentialUpdate {
            fields: [(
                "base_url".to_string(),
                "https://proxy.internal/v1".to_string(),
            )]
            .into(),
            ..CredentialUpdate::default()
        },
    ] {
        let cur = v.get_credential(&c.id).await.unwrap();
        v.update_credential(&c.id, Some(cur.version), u, ACTOR)
            .await
            .unwrap();
    }
    assert_eq!(
        before.version + 2,
        v.get_credential(&c.id).await.unwrap().version
    );
    assert_eq!(v.key_status().await.unwrap().pending_rotation(), 0);
    v.close().await;
    let v = db.open(keyring_of(&[("k2", 2)])).await;
    assert_eq!(
        resolve_key(&v, &req("acme", "openai")).await.unwrap(),
        CANARY_OPENAI
    );
    v.close().await;
    db.cleanup().await;
}

async fn undecryptable_records_are_listed_and_skipped_never_fatal(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let a = v
        .add_credential(new_cred("acme", "openai", "a", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();
    let mut b = new_cred("acme", "openai", "b", "sk-second-0123456789abcdef");
    b.priority = 200;
    let b = v.add_credential(b, ACTOR).await.unwrap();
    let g = v
        .add_credential(
            new_cred("globex", "openai", "g", "sk-globex-0123456789abcdef"),
            ACTOR,
        )
        .await
        .unwrap();

    // Tamper with a's ciphertext: it becomes undecryptable and resolution falls over to b.
    let sql = "UPDATE credentials SET sealed_secret = $1 WHERE id = $2";
    let row = sqlx::query("SELECT sealed_secret FROM credentials WHERE id = $1")
        .bind(a.id.as_str())
        .fetch_one(v.pool())
        .await
        .unwrap();
    let mut sealed: Vec<u8> = row.try_get("sealed_secret").unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    sqlx::query(sql)
        .bind(sealed)
        .bind(a.id.as_str())
        .execute(v.pool())
        .await
        .unwrap();
    // Move globex's ciphertext and data key onto b: it must not open as b.
    let row = sqlx::query("SELECT wrapped_dek, sealed_secret FROM credentials WHERE id = $1")
        .bind(g.id.as_str())
        .fetch_one(v.pool())
        .await
        .unwrap();
    let (w, s): (Vec<u8>, Vec<u8>) = (row.try_get(0).unwrap(), row.try_get(1).unwrap());
    v.close().await;

    let v = db.open(k1()).await;
    let status = |list: &[CredentialView], id: &keyward_core::CredentialId| {
        list.iter().find(|c| &c.id == id).unwrap().status
    };
    let list = v.list_credentials(None, None).await.unwrap();
    assert_eq!(status(&list, &a.id), CredentialStatus::Undecryptable);
    assert_eq!(status(&list, &b.id), CredentialStatus::Ok);
    assert_eq!(
        resolve_key(&v, &req("acme", "openai")).await.unwrap(),
        "sk-second-0123456789abcdef"
    );

    sqlx::query("UPDATE credentials SET wrapped_dek = $1, sealed_secret = $2 WHERE id = $3")
        .bind(w)
        .bind(s)
        .bind(b.id.as_str())
        .execute(v.pool())
        .await
        .unwrap();
    v.close().await;
    let v = db.open(k1()).await;
    let list = v.list_credentials(None, None).await.unwrap();
    assert_eq!(status(&list, &b.id), CredentialStatus::Undecryptable);
    assert_eq!(status(&list, &g.id), CredentialStatus::Ok);
    let err = resolve_key(&v, &req("acme", "openai")).await.unwrap_err();
    assert!(
        err.to_string().contains("2 could not be decrypted"),
        "{err}"
    );
    v.close().await;

    // Opened with the wrong master key: every row is listed as undecryptable, start-up says
    // which key is missing, and audited writes are refused.
    let wrong = db.open(keyring_of(&[("other", 9)])).await;
    let list = wrong.list_credentials(None, None).await.unwrap();
    assert_eq!(list.len(), 3);
    assert!(
        list.iter()
            .all(|c| c.status == CredentialStatus::Undecryptable)
    );
    let warnings = wrong.startup_warnings().await.unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("'k1'") && w.contains("3 credential(s)")),
        "{warnings:?}"
    );
    let err = wrong
        .create_org(&org("initech"), None, ACTOR)
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err}");
    assert_eq!(
        wrong.list_orgs().await.unwrap().len(),
        2,
        "the refused write left no trace"
    );
    wrong.close().await;

    // Same kid, wrong bytes.
    let same_kid = db.open(keyring_of(&[("k1", 9)])).await;
    let warnings = same_kid.startup_warnings().await.unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("does not open")),
        "{warnings:?}"
    );
    same_kid.close().await;
    db.cleanup().await;
}

async fn another_process_writes_are_seen_once_the_cache_entry_expires(db: Db) {
    let open = |ttl: std::time::Duration| {
        Vault::open(
            &db.location,
            k1(),
            VaultOptions {
                cache_ttl: ttl,
                env: EnvSource::Map(Arc::new(HashMap::new())),
                ..VaultOptions::default()
            },
        )
    };
    // "The server": one caches for an hour, one not at all. "The CLI" writes beside them.
    let long = open(std::time::Duration::from_secs(3600)).await.unwrap();
    let none = open(std::time::Duration::ZERO).await.unwrap();
    let cli = open(std::time::Duration::from_secs(3600)).await.unwrap();
    setup_orgs(&cli).await;
    let c = cli
        .add_credential(new_cred("acme", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();
    for v in [&long, &none] {
        assert!(v.resolve_unaudited(&req("acme", "openai")).await.is_ok());
    }
    cli.set_credential_active(&c.id, false, ACTOR)
        .await
        .unwrap();
    assert!(
        none.resolve_unaudited(&req("acme", "openai"))
            .await
            .is_err(),
        "an expired entry is read again"
    );
    assert!(
        long.resolve_unaudited(&req("acme", "openai")).await.is_ok(),
        "within its time to live an entry stands: the bound the option sets"
    );
    for v in [long, none, cli] {
        v.close().await;
    }
    db.cleanup().await;
}

async fn config_variables_plain_and_sensitive(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let name = VarName::new("anthropic.production.key").unwrap();
    let plain = VarName::new("LOG_LEVEL").unwrap();
    v.set_var(
        &plain,
        None,
        &SecretString::from("debug"),
        false,
        Some("verbosity"),
        ACTOR,
    )
    .await
    .unwrap();
    v.set_var(
        &name,
        None,
        &SecretString::from("CANARY-global"),
        true,
        None,
        ACTOR,
    )
    .await
    .unwrap();
    v.set_var(
        &name,
        Some(&org("acme")),
        &SecretString::from("CANARY-acme"),
        true,
        None,
        ACTOR,
    )
    .await
    .unwrap();

    let list = v.list_vars(None).await.unwrap();
    assert_eq!(list.len(), 3);
    let json = serde_json::to_string(&list).unwrap();
    assert!(!json.contains("CANARY"), "{json}");
    assert!(json.contains("debug"));
    assert!(
        list.iter()
            .filter(|x| x.sensitive)
            .all(|x| x.shown_value() == "***")
    );

    let got = v
        .get_var(&plain, Some(&org("acme")), false, ACTOR)
        .await
        .unwrap();
    assert_eq!(got.value.unwrap().expose_secret(), "debug");
    let hidden = v
        .get_var(&name, Some(&org("acme")), false, ACTOR)
        .await
        .unwrap();
    assert!(hidden.value.is_none());
    let acme = v
        .get_var(&name, Some(&org("acme")), true, ACTOR)
        .await
        .unwrap();
    assert_eq!(acme.value.unwrap().expose_secret(), "CANARY-acme");
    let globex = v
        .get_var(&name, Some(&org("globex")), true, ACTOR)
        .await
        .unwrap();
    assert_eq!(
        globex.value.unwrap().expose_secret(),
        "CANARY-global",
        "falls back to global"
    );
    let reveals = v
        .list_events(
            &EventFilter {
                action: Some("reveal".into()),
                ..EventFilter::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(reveals.len(), 2);

    // Setting a sensitive variable again without the flag keeps it sensitive.
    let again = v
        .set_var(
            &name,
            None,
            &SecretString::from("CANARY-2"),
            false,
            None,
            ACTOR,
        )
        .await
        .unwrap();
    assert!(again.sensitive && again.version == 2);
    assert!(!contains(&everything_stored(&db, &v).await, "CANARY"));

    v.delete_var(&name, Some(&org("acme")), ACTOR)
        .await
        .unwrap();
    assert!(matches!(
        v.delete_var(&name, Some(&org("acme")), ACTOR)
            .await
            .unwrap_err(),
        VaultError::NotFound(_)
    ));
    assert_eq!(v.list_vars(Some(&org("acme"))).await.unwrap().len(), 0);
    v.close().await;
    db.cleanup().await;
}

async fn audit_chain_detects_edits_deletions_and_truncation(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let c = v
        .add_credential(new_cred("acme", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();
    v.set_credential_active(&c.id, false, ACTOR).await.unwrap();
    v.set_credential_active(&c.id, true, ACTOR).await.unwrap();
    resolve_key(&v, &req("acme", "openai")).await.unwrap();
    v.delete_credential(&c.id, ACTOR).await.unwrap();
    let report = v.verify_events().await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 7);
    let actions: Vec<String> = v
        .list_events(&EventFilter::default(), 50)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "create",
            "create",
            "create",
            "deactivate",
            "activate",
            "resolve",
            "delete"
        ]
    );
    let only_acme = v
        .list_events(&"org=acme,category=secret_management".parse().unwrap(), 50)
        .await
        .unwrap();
    assert_eq!(only_acme.len(), 6, "the umbrella covers the resolution too");

    // Edit the middle event.
    sqlx::query("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 4")
        .execute(v.pool())
        .await
        .unwrap();
    let report = v.verify_events().await.unwrap();
    assert_eq!(report.problem.as_ref().map(|p| p.0), Some(4), "{report:?}");
    sqlx::query("UPDATE audit_events SET actor = 'test:contract' WHERE seq = 4")
        .execute(v.pool())
        .await
        .unwrap();
    assert!(
        v.verify_events().await.unwrap().ok(),
        "restoring the event restores the chain"
    );

    // Delete the last event: the head notices.
    sqlx::query("DELETE FROM audit_events WHERE seq = 7")
        .execute(v.pool())
        .await
        .unwrap();
    let report = v.verify_events().await.unwrap();
    assert!(
        report.problem.as_ref().unwrap().1.contains("removed"),
        "{report:?}"
    );
    // Delete one in the middle.
    sqlx::query("DELETE FROM audit_events WHERE seq = 3")
        .execute(v.pool())
        .await
        .unwrap();
    let report = v.verify_events().await.unwrap();
    assert_eq!(report.problem.as_ref().map(|p| p.0), Some(3), "{report:?}");
    // Rewind the head to match (what deleting events from the end would need): its MAC no
    // longer fits.
    sqlx::query(
        "UPDATE audit_head SET seq = 6, link = (SELECT link FROM audit_events WHERE seq = 6) WHERE id = 1",
    )
    .execute(v.pool())
    .await
    .unwrap();
    let report = v.verify_events().await.unwrap();
    assert!(
        report
            .problem
            .as_ref()
            .unwrap()
            .1
            .contains("head of the log was altered"),
        "{report:?}"
    );
    v.close().await;
    db.cleanup().await;
}

async fn an_operation_whose_event_cannot_be_written_does_not_happen(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    v.pool().execute("DROP TABLE audit_events").await.unwrap();
    let err = v
        .add_credential(new_cred("acme", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err}");
    assert!(!err.to_string().contains("CANARY"));
    assert!(v.list_credentials(None, None).await.unwrap().is_empty());
    let err = v
        .set_var(
            &VarName::new("X").unwrap(),
            None,
            &SecretString::from("v"),
            true,
            None,
            ACTOR,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err}");
    assert!(v.list_vars(None).await.unwrap().is_empty());
    let err = v.resolve(&req("acme", "openai"), ACTOR).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err}");
    v.close().await;
    db.cleanup().await;
}

async fn master_key_rotation_is_resumable_and_keeps_everything_readable(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let mut keys = Vec::new();
    for i in 0..7 {
        let key = format!("sk-rotation-{i:02}-0123456789abcdef");
        let o = if i % 2 == 0 { "acme" } else { "globex" };
        v.add_credential(new_cred(o, "openai", &format!("c{i}"), &key), ACTOR)
            .await
            .unwrap();
        keys.push((o, format!("c{i}"), key));
    }
    let secret_var = VarName::new("SECRET").unwrap();
    v.set_var(
        &secret_var,
        None,
        &SecretString::from("var-secret"),
        true,
        None,
        ACTOR,
    )
    .await
    .unwrap();
    v.close().await;

    let both = || keyring_of(&[("k2", 2), ("k1", 1)]);
    let v = db.open(both()).await;
    let status = v.key_status().await.unwrap();
    assert_eq!(status.primary, "k2");
    assert_eq!(
        status.pending_rotation(),
        9,
        "7 credentials, 1 variable, 1 chain key"
    );
    assert!(
        v.startup_warnings()
            .await
            .unwrap()
            .iter()
            .any(|w| w.contains("master-key rotate"))
    );

    // A rotation that dies after its first batch (here: a panic in the progress callback).
    let dying = v.clone();
    let crash = tokio::spawn(async move {
        dying
            .rotate_master_key(3, ACTOR, |p| assert!(p.done < 3, "simulated crash"))
            .await
    })
    .await;
    assert!(crash.unwrap_err().is_panic());
    let mid = v.key_status().await.unwrap();
    let on = |kid: &str| mid.kids.iter().find(|k| k.kid == kid).unwrap().total();
    assert_eq!((on("k2"), on("k1")), (3, 6), "{mid:?}");
    // Mid-rotation, everything still opens.
    assert!(
        v.list_credentials(None, None)
            .await
            .unwrap()
            .iter()
            .all(|c| c.status == CredentialStatus::Ok)
    );
    for (o, name, key) in &keys {
        let mut r = req(o, "openai");
        r.name = Some(CredentialName::new(name).unwrap());
        assert_eq!(&resolve_key(&v, &r).await.unwrap(), key);
    }

    // Running it again finishes the job.
    let report = v.rotate_master_key(1000, ACTOR, |_| {}).await.unwrap();
    assert_eq!(
        (report.rewrapped, report.failed, report.remaining),
        (6, 0, 0)
    );
    assert_eq!(v.key_status().await.unwrap().pending_rotation(), 0);
    v.close().await;

    // The old key can go now: everything opens with k2 alone, and the audit chain verifies.
    let v = db.open(keyring_of(&[("k2", 2)])).await;
    assert!(v.startup_warnings().await.unwrap().is_empty());
    for (o, name, key) in &keys {
        let mut r = req(o, "openai");
        r.name = Some(CredentialName::new(name).unwrap());
        assert_eq!(&resolve_key(&v, &r).await.unwrap(), key);
    }
    let var = v.get_var(&secret_var, None, true, ACTOR).await.unwrap();
    assert_eq!(var.value.unwrap().expose_secret(), "var-secret");
    let report = v.verify_events().await.unwrap();
    assert!(report.ok(), "{report:?}");
    let rotations = v
        .list_events(&"category=key_management".parse().unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(
        rotations
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        ["rotate", "rotate_start", "rotate_start"]
    );
    v.close().await;

    // Had k1 been dropped before the rotation finished, start-up would name it and count.
    let v = db.open(k1()).await;
    let warnings = v.startup_warnings().await.unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("'k2'") && w.contains("7 credential(s)")),
        "{warnings:?}"
    );
    v.close().await;
    db.cleanup().await;
}

/// Group commit: many audited operations at once share transactions, and each one answered
/// has its event in the log, and each one refused has none. A batch whose event cannot be
/// written (a trigger refuses one actor's events) fails its operations and no others; a write
/// refused inside a shared batch (a duplicate name) is rolled back alone.
async fn concurrent_audited_operations_share_commits_and_each_answer_is_durable(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    v.add_credential(new_cred("acme", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();
    let poison = match db.backend {
        Backend::Sqlite => vec![
            "CREATE TRIGGER poison BEFORE INSERT ON audit_events WHEN NEW.actor = 'test:poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
        ],
        Backend::Postgres => vec![
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.actor = 'test:poison' THEN RAISE EXCEPTION 'poisoned'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER poison BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION poison()",
        ],
    };
    for sql in poison {
        v.pool().execute(sql).await.unwrap();
    }
    let before = v.stats();
    const TASKS: usize = 24;
    const EACH: usize = 15;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let v = v.clone();
        tasks.push(tokio::spawn(async move {
            // (actor, answered ok, refused) per task; task 0 is poisoned.
            let actor = if t == 0 {
                "test:poison".to_owned()
            } else {
                format!("test:r{t}")
            };
            let (mut ok, mut refused) = (0usize, 0usize);
            let mut writes = Vec::new();
            for i in 0..EACH {
                match v.resolve(&req("acme", "openai"), &actor).await {
                    Ok(r) => {
                        assert_eq!(r.secret.unwrap().expose_secret(), CANARY_OPENAI);
                        ok += 1;
                    }
                    Err(e) => {
                        assert!(matches!(e, VaultError::AuditUnavailable(_)), "{e}");
                        assert!(!e.to_string().contains("CANARY"), "{e}");
                        refused += 1;
                    }
                }
                // Every third step a write: a variable of its own, and a race for one name.
                if t > 0 && i % 3 == 0 {
                    let name = VarName::new(&format!("V_{t}_{i}")).unwrap();
                    let set = v
                        .set_var(&name, None, &SecretString::from("x"), false, None, &actor)
                        .await;
                    writes.push((name, set.is_ok()));
                    match v.create_org(&org("dup"), None, &actor).await {
                        // Refused with a poisoned batch, or the name taken: either way
                        // nothing of it is stored (checked below).
                        Ok(_)
                        | Err(VaultError::AlreadyExists(_))
                        | Err(VaultError::AuditUnavailable(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            (actor, ok, refused, writes)
        }));
    }
    let mut answered = 0;
    let mut by_actor = Vec::new();
    for t in tasks {
        let (actor, ok, refused, writes) = t.await.unwrap();
        answered += ok + refused + writes.len() * 2;
        by_actor.push((actor, ok, refused, writes));
    }
    // Every answered resolution is in the log, and no refused one.
    for (actor, ok, refused, writes) in &by_actor {
        let events = v
            .list_events(
                &EventFilter {
                    actor: Some(actor.clone()),
                    action: Some("resolve".into()),
                    ..EventFilter::default()
                },
                10_000,
            )
            .await
            .unwrap();
        assert_eq!(
            events.len(),
            *ok,
            "{actor}: {ok} answered, {refused} refused"
        );
        if actor == "test:poison" {
            assert_eq!(*ok, 0);
            assert_eq!(*refused, EACH);
        }
        for (name, stored) in writes {
            let found = v.get_var(name, None, false, ACTOR).await.is_ok();
            assert_eq!(found, *stored, "{name}");
        }
    }
    // One organization named "dup": one create event for it, whichever writer won.
    let dup = v
        .list_events(
            &EventFilter {
                target: Some("org:dup".into()),
                action: Some("create".into()),
                ..EventFilter::default()
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(dup.len(), 1, "{dup:?}");
    assert!(
        v.list_orgs()
            .await
            .unwrap()
            .iter()
            .any(|o| o.id.as_str() == "dup")
    );
    // They shared: far fewer commits than operations.
    let after = v.stats();
    let batches = after.commit_batches - before.commit_batches;
    let operations = after.committed_operations - before.committed_operations;
    assert!(
        operations > 0 && operations as usize <= answered,
        "{operations} of {answered}"
    );
    assert!(
        batches * 2 < operations,
        "{batches} commits for {operations} operations"
    );
    // A NUL that reached an event (PostgreSQL refuses it in text) is replaced, so it cannot
    // fail the batch it shares with others.
    v.record(
        keyward_core::audit::NewEvent::new(
            "test:nul\0actor",
            Category::SecretAccess,
            "resolve",
            "provider:\0openai".into(),
        )
        .org(Some("acme\0")),
    )
    .await
    .unwrap();
    let report = v.verify_events().await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked as i64, v.audit_event_count().await.unwrap());
    v.close().await;
    db.cleanup().await;
}

/// A caller that goes away mid-write (its client hung up: the future is dropped at any await)
/// leaves either the whole write with its event, or nothing, and the batch goes on.
async fn a_write_dropped_at_any_point_is_all_or_nothing(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    // Cut short after a growing delay, so that the drops land at every step of a write, until
    // twenty of them finished in time (however slow the machine is today).
    let mut finished = 0;
    for i in 0..400u64 {
        let new = new_cred("acme", "openai", &format!("cut-{i}"), CANARY_OPENAI);
        let write = v.add_credential(new, ACTOR);
        let delay = std::time::Duration::from_micros(i * 250);
        if tokio::time::timeout(delay, write).await.is_ok() {
            finished += 1;
            if finished == 20 {
                break;
            }
        }
    }
    assert!(finished > 0, "no write finished within 100 ms");
    // One more write that must go through after all of that.
    v.add_credential(new_cred("acme", "openai", "after", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();
    let stored: std::collections::BTreeSet<String> = v
        .list_credentials(Some(&org("acme")), None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| format!("credential:{}", c.id))
        .collect();
    let created: std::collections::BTreeSet<String> = v
        .list_events(
            &EventFilter {
                org: Some("acme".into()),
                action: Some("create".into()),
                ..EventFilter::default()
            },
            1_000,
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.target.starts_with("credential:"))
        .map(|e| e.target)
        .collect();
    assert_eq!(
        stored, created,
        "every stored write has its event, and only those"
    );
    assert!(stored.len() > finished, "{stored:?}");
    assert!(v.verify_events().await.unwrap().ok());
    v.close().await;
    db.cleanup().await;
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::Db::postgres().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

contract!(
    organizations_are_created_listed_and_unique,
    credentials_are_stored_sealed_and_listed_masked,
    bad_keys_are_refused_unless_the_check_is_skipped,
    provider_fields_are_checked,
    keyless_and_key_file_providers_resolve_sensibly,
    resolution_follows_activity_env_fallback_and_names_what_it_looked_for,
    strategies_pick_by_priority_turns_and_weight,
    concurrent_updates_never_lose_a_write,
    key_rotation_of_a_credential_is_seen_by_the_next_resolution,
    undecryptable_records_are_listed_and_skipped_never_fatal,
    stored_ciphertexts_are_bound_to_provider_fields_and_name,
    an_update_after_a_rotation_keeps_the_new_wrap,
    config_variables_plain_and_sensitive,
    another_process_writes_are_seen_once_the_cache_entry_expires,
    audit_chain_detects_edits_deletions_and_truncation,
    an_operation_whose_event_cannot_be_written_does_not_happen,
    master_key_rotation_is_resumable_and_keeps_everything_readable,
    listings_page_in_sql_and_resolution_opens_only_what_it_hands_out,
    the_last_admin_token_cannot_be_revoked,
    the_guides_secret_management_query_shows_every_secret_operation,
    dashboard_sessions_end_on_sign_out_idle_age_and_their_tokens_end,
    legacy_plaintext_rows_are_read_reported_and_sealed,
    concurrent_audited_operations_share_commits_and_each_answer_is_durable,
    a_write_dropped_at_any_point_is_all_or_nothing,
    a_write_withdraws_only_what_it_changed,
    a_rare_audit_filter_reads_a_bounded_window_and_gives_a_cursor,
    one_organizations_audit_reads_cannot_take_anothers_turn,
    the_chain_is_verified_onward_from_a_sealed_checkpoint,
    pruned_events_leave_a_chain_that_still_proves_itself,
    a_persons_session_keeps_its_grants_lists_and_ends_and_a_sign_in_state_works_once,
);

/// A person's session (single sign-on) holds what the rules gave at sign-in, is listed beside
/// token sessions with a handle that is not its id, and ends by that handle (audited); a sign-in
/// under way is taken once, and an unknown state gives nothing.
async fn a_persons_session_keeps_its_grants_lists_and_ends_and_a_sign_in_state_works_once(db: Db) {
    use keyward_store::{Person, Role, RoleGrant, SessionLimits};
    use std::time::Duration;
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let bob = Person {
        issuer: "https://idp.test".into(),
        subject: "bob".into(),
        email: Some("bob@example.test".into()),
    };
    let grants = vec![
        RoleGrant {
            role: Role::OrgAdmin,
            org: Some(org("acme")),
        },
        RoleGrant {
            role: Role::Viewer,
            org: Some(org("globex")),
        },
    ];
    assert!(
        v.create_sso_session(
            bob.clone(),
            Vec::new(),
            SessionLimits::default(),
            "10.0.0.1"
        )
        .await
        .is_err(),
        "no session without a grant"
    );
    let (id, session) = v
        .create_sso_session(
            bob.clone(),
            grants.clone(),
            SessionLimits::default(),
            "10.0.0.1",
        )
        .await
        .unwrap();
    assert_eq!(session.principal.actor(), "bob@example.test (sso)");
    let found = v.ui_session(id.expose_secret()).await.unwrap().unwrap();
    assert_eq!(found.principal.grants, grants);
    assert_eq!(found.principal.person.as_ref(), Some(&bob));
    // Beside a token's session.
    let (admin, _) = v
        .create_token("admin", Role::Admin, None, None, ACTOR)
        .await
        .unwrap();
    let (token_session, _) = v
        .create_ui_session(admin.expose_secret(), SessionLimits::default(), "10.0.0.2")
        .await
        .unwrap()
        .unwrap();
    let listed = v.list_ui_sessions().await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let person = listed.iter().find(|s| s.kind == "sso").unwrap();
    assert_eq!(person.actor, "bob@example.test (sso)");
    assert_eq!(person.grants, grants);
    assert_eq!(person.from.as_deref(), Some("10.0.0.1"));
    assert_eq!(person.issuer.as_deref(), Some("https://idp.test"));
    assert!(!id.expose_secret().contains(&person.id));
    // Ended by its handle, as an admin: gone everywhere; the token's session stays.
    assert!(
        !v.end_ui_session_by_handle("0123456789abcdef", "token:admin")
            .await
            .unwrap()
    );
    assert!(
        v.end_ui_session_by_handle(&person.id, "token:admin")
            .await
            .unwrap()
    );
    assert!(v.ui_session(id.expose_secret()).await.unwrap().is_none());
    assert!(
        v.ui_session(token_session.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        !v.end_ui_session_by_handle(&person.id, "token:admin")
            .await
            .unwrap()
    );
    let events = v
        .list_events(&"action=ui_session_end".parse().unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, "token:admin");
    // A sign-in under way works once; a lapsed one not at all.
    v.begin_sso_login(
        "state-1",
        "nonce-1",
        "verifier-1",
        "/ui/usage",
        Duration::from_secs(300),
    )
    .await
    .unwrap();
    let taken = v.take_sso_login("state-1").await.unwrap().unwrap();
    assert_eq!(
        (taken.nonce.as_str(), taken.return_to.as_str()),
        ("nonce-1", "/ui/usage")
    );
    assert_eq!(taken.verifier.expose_secret(), "verifier-1");
    assert!(v.take_sso_login("state-1").await.unwrap().is_none());
    assert!(v.take_sso_login("never-issued").await.unwrap().is_none());
    v.begin_sso_login("state-2", "n", "v", "/ui/", Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(v.take_sso_login("state-2").await.unwrap().is_none());
    assert!(
        !contains(&everything_stored(&db, &v).await, "state-1"),
        "only a state's hash is stored"
    );
    v.close().await;
    db.cleanup().await;
}

/// The console's verification reads only what is new since the last verified checkpoint, a
/// bounded number of events per call, finds an edit among them, and refuses a checkpoint that
/// was moved by hand.
async fn the_chain_is_verified_onward_from_a_sealed_checkpoint(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    fill_log(&v, "acme", 2500, "token:first").await;
    let head = v.audit_event_count().await.unwrap();
    assert_eq!(v.verified_checkpoint().await.unwrap(), None);
    let first = v.verify_new_events(1000).await.unwrap();
    assert!(first.ok(), "{first:?}");
    assert_eq!((first.from_seq, first.checked), (0, 1000));
    assert_eq!(v.verified_checkpoint().await.unwrap().unwrap().0, 1000);
    let rest = v.verify_new_events(100_000).await.unwrap();
    assert!(rest.ok(), "{rest:?}");
    assert_eq!(rest.from_seq, 1000);
    assert_eq!(rest.checked as i64, head - 1000);
    assert_eq!(v.verified_checkpoint().await.unwrap().unwrap().0, head);
    // Nothing new: nothing read, still fine.
    assert_eq!(v.verify_new_events(100_000).await.unwrap().checked, 0);

    // An edit among the new events is found, and the checkpoint does not move past it.
    fill_log(&v, "acme", 20, "token:later").await;
    sqlx::query("UPDATE audit_events SET action = 'nothing' WHERE seq = $1")
        .bind(head + 5)
        .execute(v.pool())
        .await
        .unwrap();
    let found = v.verify_new_events(100_000).await.unwrap();
    assert_eq!(
        found.problem.as_ref().map(|p| p.0),
        Some(head + 5),
        "{found:?}"
    );
    assert_eq!(v.verified_checkpoint().await.unwrap().unwrap().0, head);
    // A checkpoint moved by hand (past the edit) does not hold.
    sqlx::query("UPDATE audit_checkpoint SET seq = seq + 10")
        .execute(v.pool())
        .await
        .unwrap();
    let moved = v.verify_new_events(100_000).await.unwrap();
    assert!(
        moved
            .problem
            .as_ref()
            .is_some_and(|p| p.1.contains("checkpoint was altered")),
        "{moved:?}"
    );
    // The full verification still finds the edit.
    let full = v.verify_events().await.unwrap();
    assert_eq!(full.problem.map(|p| p.0), Some(head + 5));
    v.close().await;
    db.cleanup().await;
}

/// Fills the log with `n` events of `org`, in batches.
async fn fill_log(v: &Vault, org: &str, n: usize, first_actor: &str) {
    use keyward_core::audit::NewEvent;
    let mut made = 0;
    while made < n {
        let batch: Vec<NewEvent> = (made..(made + 1000).min(n))
            .map(|i| {
                let actor = if i == 0 { first_actor } else { "token:busy" };
                NewEvent::new(
                    actor,
                    Category::SecretAccess,
                    "resolve",
                    format!("credential:{i}"),
                )
                .org(Some(org))
            })
            .collect();
        made += batch.len();
        v.record_many(batch).await.unwrap();
    }
}

/// A filter the indexes cannot answer (an actor) reads back at most SCAN_BUDGET events per
/// call, answers what it found there with a cursor, and following the cursor reaches the
/// oldest event; a filter they answer (the organization) pages as before.
async fn a_rare_audit_filter_reads_a_bounded_window_and_gives_a_cursor(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let n = 2 * keyward_store::SCAN_BUDGET as usize + 500;
    fill_log(&v, "acme", n, "token:rare").await;
    let head = v.audit_event_count().await.unwrap();

    let mut filter: EventFilter = "org=acme,actor=token:nobody".parse().unwrap();
    let page = v.list_events_page(&filter, 50).await.unwrap();
    assert!(page.items.is_empty());
    let cursor = page.next.expect("older events may match: a cursor");
    assert!(
        head - cursor <= keyward_store::SCAN_BUDGET,
        "a bounded window"
    );
    // Following the cursor ends, having found nothing.
    let mut pages = 1;
    filter.before = page.next;
    while filter.before.is_some() {
        let page = v.list_events_page(&filter, 50).await.unwrap();
        assert!(page.items.is_empty());
        filter.before = page.next;
        pages += 1;
        assert!(pages < 10, "the cursor must move back");
    }
    assert_eq!(
        pages,
        3,
        "{n} events in windows of {}",
        keyward_store::SCAN_BUDGET
    );

    // The rare actor is found on the page that reaches it.
    let mut filter: EventFilter = "org=acme,actor=token:rare".parse().unwrap();
    let mut found = Vec::new();
    loop {
        let page = v.list_events_page(&filter, 50).await.unwrap();
        found.extend(page.items);
        match page.next {
            Some(n) => filter.before = Some(n),
            None => break,
        }
    }
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].target, "credential:0");
    // `list_events` (one call) is bounded too: the newest window only.
    assert!(
        v.list_events(&"actor=token:rare".parse().unwrap(), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The organization alone: the index answers, full pages and a cursor, no budget.
    let page = v
        .list_events_page(&"org=acme".parse().unwrap(), 1000)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1000);
    assert_eq!(page.next, Some(page.items[999].seq));
    // Another organization's events are not read through for it.
    let page = v
        .list_events_page(&"org=globex,action=resolve".parse().unwrap(), 50)
        .await
        .unwrap();
    assert!(page.items.is_empty() && page.next.is_none());
    v.close().await;
    db.cleanup().await;
}

/// Listings take turns per organization: many of one organization at once wait on each other
/// (and are refused as busy after a second, never as "unavailable"), while another
/// organization's listing is answered, and the store stays up.
async fn one_organizations_audit_reads_cannot_take_anothers_turn(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    fill_log(
        &v,
        "acme",
        3 * keyward_store::SCAN_BUDGET as usize,
        "token:rare",
    )
    .await;
    fill_log(&v, "globex", 10, "token:globex").await;
    let loops: Vec<_> = (0..24)
        .map(|_| {
            let v = v.clone();
            tokio::spawn(async move {
                v.list_events_page(&"org=acme,actor=token:nobody".parse().unwrap(), 50)
                    .await
            })
        })
        .collect();
    let other = v
        .list_events_page(&"org=globex,actor=token:globex".parse().unwrap(), 50)
        .await
        .unwrap();
    assert_eq!(
        other.items.len(),
        1,
        "another organization's read is answered"
    );
    for l in loops {
        match l.await.unwrap() {
            Ok(page) => assert!(page.items.is_empty()),
            Err(VaultError::Busy(_)) => {}
            Err(e) => panic!("a listing failed otherwise: {e}"),
        }
    }
    assert!(v.store_available(), "the store was never marked down");
    v.close().await;
    db.cleanup().await;
}

/// A write costs the caches only what it changed: a variable nothing; a key added to one
/// organization makes that organization's entry stale (still served while the store is away)
/// and leaves the others and every checked token alone; a deactivated key is never served
/// again, stale or not; a revocation drops the checked tokens.
async fn a_write_withdraws_only_what_it_changed(db: Db) {
    use keyward_core::resolve::EnvFallback;
    let v = Vault::open(
        &db.location,
        k1(),
        VaultOptions {
            cache_ttl: std::time::Duration::from_secs(3600),
            env: EnvSource::Map(Arc::new(HashMap::new())),
            ..VaultOptions::default()
        },
    )
    .await
    .unwrap();
    setup_orgs(&v).await;
    let acme_key = v
        .add_credential(new_cred("acme", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();
    v.add_credential(new_cred("globex", "openai", "prod", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();
    let (token, _) = v
        .create_token(
            "t",
            keyward_store::Role::Viewer,
            Some(&org("acme")),
            None,
            ACTOR,
        )
        .await
        .unwrap();
    let openai = Provider::get("openai").unwrap();
    let stale_for = std::time::Duration::from_secs(300);
    let candidates = |o: &'static str| {
        let v = v.clone();
        async move {
            v.gateway_candidates(&org(o), openai, stale_for, EnvFallback::Off)
                .await
                .map(|c| c.len())
        }
    };
    assert_eq!(candidates("acme").await.unwrap(), 1);
    assert_eq!(candidates("globex").await.unwrap(), 1);
    assert!(
        v.authenticate(token.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
    let (keys, tokens) = (v.generation(), v.token_generation());

    v.set_var(
        &VarName::new("LOG_LEVEL").unwrap(),
        Some(&org("globex")),
        &SecretString::from("debug"),
        false,
        None,
        ACTOR,
    )
    .await
    .unwrap();
    assert_eq!(v.generation(), keys, "nothing caches variables");
    v.add_credential(
        new_cred("globex", "anthropic", "a", CANARY_ANTHROPIC),
        ACTOR,
    )
    .await
    .unwrap();
    v.add_credential(new_cred("acme", "openai", "second", CANARY_OPENAI), ACTOR)
        .await
        .unwrap();
    assert_eq!(
        v.token_generation(),
        tokens,
        "keys written, no token touched"
    );

    // The database goes away: what was checked is still served, acme's stale entry included.
    v.pool().close().await;
    assert_eq!(
        candidates("globex").await.unwrap(),
        1,
        "another org's write"
    );
    assert_eq!(
        candidates("acme").await.unwrap(),
        1,
        "a key added: stale, served as it was"
    );
    drop(acme_key);
    v.close().await;

    // A withdrawal is never served stale; a revocation drops the checked tokens.
    let v = db.open(k1()).await;
    let c = v.list_credentials(Some(&org("acme")), None).await.unwrap();
    assert_eq!(candidates_of(&v, "acme", stale_for).await.unwrap(), 2);
    for cred in &c {
        v.set_credential_active(&cred.id, false, ACTOR)
            .await
            .unwrap();
    }
    let tokens = v.token_generation();
    let listed = v.list_tokens(Some(&org("acme"))).await.unwrap();
    v.revoke_token(&listed[0].id, ACTOR).await.unwrap();
    assert_ne!(v.token_generation(), tokens);
    v.pool().close().await;
    assert!(
        candidates_of(&v, "acme", stale_for).await.is_err(),
        "deactivated keys must not be served from the cache"
    );
    v.close().await;
    db.cleanup().await;
}

async fn candidates_of(
    v: &Vault,
    o: &str,
    stale_for: std::time::Duration,
) -> Result<usize, VaultError> {
    v.gateway_candidates(
        &org(o),
        Provider::get("openai").unwrap(),
        stale_for,
        keyward_core::resolve::EnvFallback::Off,
    )
    .await
    .map(|c| c.len())
}

const LEGACY_KEY: &str = "sk-proj-LEGACYCANARYplain0123456789abcdWXYZ";
const LEGACY_VALUE: &str = "LEGACYCANARY-plain-variable-value";

/// Writes what an external migration writes: the documented plain-text columns.
async fn write_legacy_rows(v: &Vault, id: &str, var: &str) {
    sqlx::query(
        "INSERT INTO credentials (id, org_id, provider, name, modalities, fields, active, priority, \
         weight, key_hint, kid, wrapped_dek, sealed_secret, created_at, created_by, updated_at, \
         updated_by, version, plaintext_secret) VALUES \
         ($1, 'acme', 'openai', $2, '', '{}', 1, 100, 1, '', '', $3, NULL, 1, 'migration', 1, 'migration', 1, $4)",
    )
    .bind(id)
    .bind(format!("legacy-{var}"))
    .bind(Vec::<u8>::new())
    .bind(LEGACY_KEY)
    .execute(v.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO config_vars (id, scope, name, sensitive, value, kid, wrapped_dek, sealed_value, \
         description, created_at, created_by, updated_at, updated_by, version) VALUES \
         ($1, 'acme', $2, 1, $3, NULL, NULL, NULL, '', 1, 'migration', 1, 'migration', 1)",
    )
    .bind(format!("var-{id}"))
    .bind(var)
    .bind(LEGACY_VALUE)
    .execute(v.pool())
    .await
    .unwrap();
}

/// Rows written in plain text by an external migration are readable (status
/// `legacy_plaintext`), counted and warned about, sealed by their next update, and all of them
/// by `reencrypt_legacy`; nothing of Keyward's own writes plain text.
async fn legacy_plaintext_rows_are_read_reported_and_sealed(db: Db) {
    use keyward_core::credential::{CredentialStatus, CredentialUpdate};
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let id = "01a20000-0000-7000-8000-00000000aaaa";
    write_legacy_rows(&v, id, "LEGACY_ONE").await;
    let cid = keyward_core::CredentialId::new(id).unwrap();
    let view = v.get_credential(&cid).await.unwrap();
    assert_eq!(view.status, CredentialStatus::LegacyPlaintext);
    assert_eq!(view.key_hint, "sk-...WXYZ");
    let vars = v.list_vars(Some(&org("acme"))).await.unwrap();
    let var = vars
        .iter()
        .find(|x| x.name.as_str() == "LEGACY_ONE")
        .unwrap();
    assert_eq!(var.status, CredentialStatus::LegacyPlaintext);
    assert_eq!(var.value, None, "a sensitive value is never listed");
    // Resolved like any other.
    let mut r = req("acme", "openai");
    r.name = Some(keyward_core::CredentialName::new("legacy-LEGACY_ONE").unwrap());
    let got = v.resolve(&r, ACTOR).await.unwrap();
    assert_eq!(got.secret.unwrap().expose_secret(), LEGACY_KEY);
    let name = keyward_core::VarName::new("LEGACY_ONE").unwrap();
    let revealed = v
        .get_var(&name, Some(&org("acme")), true, ACTOR)
        .await
        .unwrap();
    assert_eq!(revealed.value.unwrap().expose_secret(), LEGACY_VALUE);
    // Counted and warned about.
    let status = v.key_status().await.unwrap();
    assert_eq!(status.legacy_plaintext, 2);
    assert!(
        status
            .warnings()
            .iter()
            .any(|w| w.contains("keyward reencrypt"))
    );
    assert!(!v.startup_warnings().await.unwrap().is_empty());
    // The next update seals it.
    let update = CredentialUpdate {
        priority: Some(5),
        ..CredentialUpdate::default()
    };
    let sealed = v
        .update_credential(&cid, None, update, ACTOR)
        .await
        .unwrap();
    assert_eq!(sealed.status, CredentialStatus::Ok);
    assert_eq!(
        v.resolve(&r, ACTOR)
            .await
            .unwrap()
            .secret
            .unwrap()
            .expose_secret(),
        LEGACY_KEY
    );
    assert_eq!(v.key_status().await.unwrap().legacy_plaintext, 1);
    // reencrypt seals the rest, and is a no-op the second time.
    write_legacy_rows(&v, "01a20000-0000-7000-8000-00000000bbbb", "LEGACY_TWO").await;
    let report = v.reencrypt_legacy(1, ACTOR, |_| {}).await.unwrap();
    assert_eq!(
        (report.credentials, report.variables, report.failed),
        (1, 2, 0)
    );
    assert_eq!(v.key_status().await.unwrap().legacy_plaintext, 0);
    let again = v.reencrypt_legacy(1, ACTOR, |_| {}).await.unwrap();
    assert_eq!((again.credentials, again.variables), (0, 0));
    let two = v
        .get_var(
            &keyward_core::VarName::new("LEGACY_TWO").unwrap(),
            Some(&org("acme")),
            true,
            ACTOR,
        )
        .await
        .unwrap();
    assert_eq!(two.value.unwrap().expose_secret(), LEGACY_VALUE);
    assert!(
        !contains(&everything_stored(&db, &v).await, LEGACY_KEY)
            && !contains(&everything_stored(&db, &v).await, LEGACY_VALUE),
        "nothing is left in plain text"
    );
    assert!(v.verify_events().await.unwrap().ok());
    let events = v
        .list_events(&"action=reencrypt".parse().unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
}

/// A dashboard session is only a hash in the store, bound to its token: it ends on sign-out,
/// when idle too long, at its end of life, and at once when its token is revoked.
async fn dashboard_sessions_end_on_sign_out_idle_age_and_their_tokens_end(db: Db) {
    use keyward_store::{Role, SessionLimits};
    use std::time::Duration;
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let (admin, _) = v
        .create_token("admin", Role::Admin, None, None, ACTOR)
        .await
        .unwrap();
    let (viewer, viewer_view) = v
        .create_token("viewer", Role::Viewer, Some(&org("acme")), None, ACTOR)
        .await
        .unwrap();
    let (resolver, _) = v
        .create_token("app", Role::Resolver, Some(&org("acme")), None, ACTOR)
        .await
        .unwrap();
    let limits = SessionLimits::default();
    let (id, session) = v
        .create_ui_session(viewer.expose_secret(), limits, "127.0.0.1")
        .await
        .unwrap()
        .unwrap();
    assert!(id.expose_secret().starts_with("kws_") && id.expose_secret().len() > 40);
    assert_eq!(session.principal.grants.len(), 1);
    assert_eq!(session.principal.grants[0].role, Role::Viewer);
    let found = v.ui_session(id.expose_secret()).await.unwrap().unwrap();
    assert_eq!(found.principal.grants[0].org, Some(org("acme")));
    assert!(
        !contains(&everything_stored(&db, &v).await, id.expose_secret()),
        "only the session id's hash is stored"
    );
    // Wrong ids, a bad token and a resolver token get nothing.
    assert!(v.ui_session("kws_nope").await.unwrap().is_none());
    assert!(
        v.create_ui_session("kwt_wrong", limits, "127.0.0.1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        v.create_ui_session(resolver.expose_secret(), limits, "127.0.0.1")
            .await
            .is_err()
    );
    // A token signing in in a loop keeps its newest sessions only: the oldest end.
    let mut ids = Vec::new();
    for _ in 0..keyward_store::SESSIONS_PER_TOKEN + 4 {
        let (more, _) = v
            .create_ui_session(viewer.expose_secret(), limits, "127.0.0.1")
            .await
            .unwrap()
            .unwrap();
        ids.push(more);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut live = 0;
    for (i, s) in ids.iter().enumerate() {
        let found = v.ui_session(s.expose_secret()).await.unwrap().is_some();
        live += usize::from(found);
        if i < 4 {
            assert!(!found, "the oldest ended");
        }
    }
    assert!(v.ui_session(id.expose_secret()).await.unwrap().is_none());
    assert_eq!(live, keyward_store::SESSIONS_PER_TOKEN);
    let (id, _) = v
        .create_ui_session(viewer.expose_secret(), limits, "127.0.0.1")
        .await
        .unwrap()
        .unwrap();
    // Sign-out ends it everywhere.
    v.end_ui_session(id.expose_secret()).await.unwrap();
    assert!(v.ui_session(id.expose_secret()).await.unwrap().is_none());
    // Revoking the token ends its sessions at once.
    let (id, _) = v
        .create_ui_session(viewer.expose_secret(), limits, "127.0.0.1")
        .await
        .unwrap()
        .unwrap();
    v.revoke_token(&viewer_view.id, ACTOR).await.unwrap();
    assert!(v.ui_session(id.expose_secret()).await.unwrap().is_none());
    // Idle too long, or too old.
    for limits in [
        SessionLimits {
            idle: Duration::from_millis(1),
            max: Duration::from_secs(3600),
        },
        SessionLimits {
            idle: Duration::from_secs(3600),
            max: Duration::from_millis(1),
        },
    ] {
        let (id, _) = v
            .create_ui_session(admin.expose_secret(), limits, "127.0.0.1")
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            v.ui_session(id.expose_secret()).await.unwrap().is_none(),
            "{limits:?}"
        );
    }
    // The default limits on an injected clock: used every 29 minutes it lives; 31 minutes
    // idle ends it; used all the time it still ends 12 hours after sign-in.
    let (id, session) = v
        .create_ui_session(admin.expose_secret(), SessionLimits::default(), "127.0.0.1")
        .await
        .unwrap()
        .unwrap();
    let id = id.expose_secret();
    let minute = 60_000;
    let at = |m: i64| keyward_core::Millis(session.created_at.0 + m * minute);
    let mut m = 0;
    while m + 29 < 12 * 60 {
        m += 29;
        assert!(
            v.ui_session_at(id, at(m)).await.unwrap().is_some(),
            "{m} min"
        );
    }
    assert!(
        v.ui_session_at(id, at(12 * 60)).await.unwrap().is_none(),
        "12 h"
    );
    let (id, session) = v
        .create_ui_session(admin.expose_secret(), SessionLimits::default(), "127.0.0.1")
        .await
        .unwrap()
        .unwrap();
    let id = id.expose_secret();
    let at = |m: i64| keyward_core::Millis(session.created_at.0 + m * minute);
    assert!(v.ui_session_at(id, at(29)).await.unwrap().is_some());
    assert!(
        v.ui_session_at(id, at(29 + 31)).await.unwrap().is_none(),
        "31 min idle"
    );
    // Ended for good: an earlier clock does not bring it back.
    assert!(v.ui_session_at(id, at(30)).await.unwrap().is_none());

    // Sign-ins are audited, failures too, with no session id or token in the trail.
    let events = v
        .list_events(&"category=secret_access".parse().unwrap(), 100)
        .await
        .unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"ui_sign_in") && actions.contains(&"ui_sign_out"),
        "{actions:?}"
    );
    assert!(
        events
            .iter()
            .filter(|e| e.action == "authenticate" && e.target == "ui")
            .count()
            >= 2,
        "{actions:?}"
    );
    let trail = serde_json::to_string(&events).unwrap();
    assert!(!trail.contains("kws_") && !trail.contains(viewer.expose_secret()));
}

/// The config-variable guide's query, `events list --filter 'category=secret_management'
/// --limit 50`, shows variable creation, update and deletion, master-key rotation and failed
/// key resolutions; the finer categories still pick out their own.
async fn the_guides_secret_management_query_shows_every_secret_operation(db: Db) {
    let v = db.open(keyring_of(&[("k1", 1)])).await;
    setup_orgs(&v).await;
    let name = VarName::new("OPENAI_API_KEY_V2").unwrap();
    for value in ["sk-proj-first-0000000000", "sk-proj-second-000000000"] {
        v.set_var(
            &name,
            Some(&org("acme")),
            &SecretString::from(value),
            true,
            None,
            ACTOR,
        )
        .await
        .unwrap();
    }
    v.delete_var(&name, Some(&org("acme")), ACTOR)
        .await
        .unwrap();
    let mut r = req("acme", "openai");
    r.env_fallback = keyward_core::resolve::EnvFallback::Off;
    assert!(v.resolve(&r, ACTOR).await.is_err());
    v.close().await;
    let v = db.open(keyring_of(&[("k2", 2), ("k1", 1)])).await;
    v.rotate_master_key(1000, ACTOR, |_| {}).await.unwrap();
    let shown: Vec<(String, String, String)> = v
        .list_events(&"category=secret_management".parse().unwrap(), 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.category.as_str().to_owned(),
                e.action,
                e.outcome.as_str().to_owned(),
            )
        })
        .collect();
    let has = |category: &str, action: &str, outcome: &str| {
        shown
            .iter()
            .any(|(c, a, o)| (c.as_str(), a.as_str(), o.as_str()) == (category, action, outcome))
    };
    assert!(has("secret_management", "create", "success"), "{shown:?}");
    assert!(has("secret_management", "update", "success"), "{shown:?}");
    assert!(has("secret_management", "delete", "success"), "{shown:?}");
    assert!(has("key_management", "rotate", "success"), "{shown:?}");
    assert!(has("secret_access", "resolve", "failure"), "{shown:?}");
    let access = v
        .list_events(&"category=secret_access".parse().unwrap(), 50)
        .await
        .unwrap();
    assert!(
        !access.is_empty()
            && access
                .iter()
                .all(|e| e.category.as_str() == "secret_access")
    );
    let keys = v
        .list_events(&"category=key_management".parse().unwrap(), 50)
        .await
        .unwrap();
    assert!(!keys.is_empty() && keys.iter().all(|e| e.category.as_str() == "key_management"));
}

/// Revoking the only working admin token would lock everyone out of the API.
async fn the_last_admin_token_cannot_be_revoked(db: Db) {
    use keyward_store::Role;
    let v = db.open(k1()).await;
    let (_, first) = v
        .create_token("first", Role::Admin, None, None, ACTOR)
        .await
        .unwrap();
    let err = v.revoke_token(&first.id, ACTOR).await.unwrap_err();
    assert!(err.to_string().contains("last admin token"), "{err}");
    let (_, second) = v
        .create_token("second", Role::Admin, None, None, ACTOR)
        .await
        .unwrap();
    v.revoke_token(&first.id, ACTOR).await.unwrap();
    assert!(v.revoke_token(&second.id, ACTOR).await.is_err());
}

/// Pages are the full listing cut in SQL (same order, the total counted); resolution opens
/// keys only as far down the order as it has to, so a broken key after the first does not
/// matter and one before it is skipped.
async fn listings_page_in_sql_and_resolution_opens_only_what_it_hands_out(db: Db) {
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let mut c = new_cred(
            "acme",
            "openai",
            &format!("k{i:02}"),
            &format!("sk-page-{i:02}-0123456789abcdef"),
        );
        c.priority = i;
        ids.push(v.add_credential(c, ACTOR).await.unwrap().id);
    }
    v.add_credential(
        new_cred("globex", "openai", "g", "sk-globex-0123456789abcdef"),
        ACTOR,
    )
    .await
    .unwrap();
    let acme = OrgId::new("acme").unwrap();
    let openai = Provider::get("openai").unwrap();
    let all = v.list_credentials(Some(&acme), Some(openai)).await.unwrap();
    let mut paged = Vec::new();
    for offset in (0..30).step_by(10) {
        let (page, total) = v
            .list_credentials_page(Some(&acme), Some(openai), 10, offset)
            .await
            .unwrap();
        assert_eq!(total, 25);
        paged.extend(page);
    }
    assert_eq!(
        paged.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        all.iter().map(|c| c.id.clone()).collect::<Vec<_>>()
    );
    let (everything, total) = v.list_credentials_page(None, None, 1000, 0).await.unwrap();
    assert_eq!((everything.len(), total), (26, 26));
    let (none, total) = v
        .list_credentials_page(Some(&acme), None, 10, 100)
        .await
        .unwrap();
    assert!(none.is_empty() && total == 25);

    // Break the key of every credential but the first two (priority 0 and 1): resolution never
    // opens them. Then break the first: it is skipped for the second.
    let corrupt = |id: keyward_core::CredentialId| {
        let pool = v.pool().clone();
        async move {
            sqlx::query("UPDATE credentials SET sealed_secret = $1 WHERE id = $2")
                .bind(vec![0u8; 40])
                .bind(id.as_str())
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    for id in &ids[2..] {
        corrupt(id.clone()).await;
    }
    let req = ResolveRequest::new(acme.clone(), openai);
    let expose =
        |r: &keyward_core::resolve::Resolved| r.secret.as_ref().unwrap().expose_secret().to_owned();
    let got = v.resolve_unaudited(&req).await.unwrap();
    assert_eq!(expose(&got), "sk-page-00-0123456789abcdef");
    corrupt(ids[0].clone()).await;
    // A write elsewhere is seen once the cache entry expires (1 s).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let got = v.resolve_unaudited(&req).await.unwrap();
    assert_eq!(expose(&got), "sk-page-01-0123456789abcdef");
    let c = v
        .gateway_candidates(
            &acme,
            openai,
            std::time::Duration::ZERO,
            keyward_core::resolve::EnvFallback::Off,
        )
        .await
        .unwrap();
    let first = c.iter().next().unwrap();
    assert_eq!(first.credential(), Some(&ids[1]));
}

/// Retention: a prune removes the old events and seals where the chain now begins; what is left
/// verifies, and an edit on either side of the verification checkpoint, a removal beyond the
/// base, or a base moved by hand is caught. A broken chain is not pruned (that would erase the
/// evidence); an immutable policy refuses a prune inside its retention; a sink's undelivered
/// events are kept.
async fn pruned_events_leave_a_chain_that_still_proves_itself(db: Db) {
    use keyward_core::Millis;
    use keyward_store::AuditPolicy;
    let v = db.open(k1()).await;
    setup_orgs(&v).await;
    fill_log(&v, "acme", 200, "token:old").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cutoff = Millis::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    fill_log(&v, "acme", 100, "token:new").await;
    let old_through = cutoff_seq(&v, cutoff).await;
    assert!(old_through >= 200, "{old_through}");

    // A tampered old event: the prune refuses, and removes nothing.
    let action = |seq: i64, to: &'static str| {
        let pool = v.pool().clone();
        async move {
            sqlx::query("UPDATE audit_events SET action = $1 WHERE seq = $2")
                .bind(to)
                .bind(seq)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    action(50, "nothing").await;
    let refused = v.prune_events(cutoff, "cli:ops").await.unwrap_err();
    assert!(
        refused.to_string().contains("broken at event 50"),
        "{refused}"
    );
    assert_eq!(
        count_events(&v).await,
        v.audit_event_count().await.unwrap() as usize
    );
    action(50, "resolve").await;

    // A sink that has delivered only so far keeps the rest.
    let lease = std::time::Duration::from_secs(30);
    assert_eq!(
        v.claim_sink("file:///siem", "me", lease, 0).await.unwrap(),
        Some(0)
    );
    assert!(v.advance_sink("file:///siem", "me", 0, 120).await.unwrap());
    let held = v.prune_events(cutoff, "cli:ops").await.unwrap();
    assert_eq!(held.through_seq, 120);
    assert_eq!(held.removed, 120);
    assert_eq!(held.kept_for_sink.as_deref(), Some("file:///siem"));
    assert!(v.verify_events().await.unwrap().ok());
    // Once it has delivered, the rest goes.
    let head = v.audit_event_count().await.unwrap();
    assert!(
        v.advance_sink("file:///siem", "me", 120, head)
            .await
            .unwrap()
    );
    let pruned = v.prune_events(cutoff, "cli:ops").await.unwrap();
    assert_eq!(pruned.through_seq, old_through);
    assert_eq!(pruned.removed as i64, old_through - 120);
    assert_eq!(pruned.kept_for_sink, None);
    let events = v
        .list_events(&"action=audit_prune".parse().unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "each prune is audited");
    assert_eq!(events[0].details["through_seq"], old_through);

    // What is left proves itself.
    let report = v.verify_events().await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.pruned_through, old_through);
    let head = v.audit_event_count().await.unwrap();
    assert_eq!(report.checked as i64, head - old_through);
    let onward = v.verify_new_events(100_000).await.unwrap();
    assert!(onward.ok(), "{onward:?}");
    assert_eq!(onward.from_seq, old_through);

    // Edits before the verification checkpoint (the first event after the base) and after it.
    fill_log(&v, "acme", 20, "token:later").await;
    for seq in [old_through + 1, head + 5] {
        action(seq, "nothing").await;
        let found = v.verify_events().await.unwrap();
        assert_eq!(found.problem.map(|p| p.0), Some(seq));
        action(seq, "resolve").await;
    }
    assert!(v.verify_events().await.unwrap().ok());

    // Events removed past the base, without the key: found missing.
    let first: (i64, Vec<u8>) = {
        let row = sqlx::query("SELECT seq, link FROM audit_events WHERE seq = $1")
            .bind(old_through + 1)
            .fetch_one(v.pool())
            .await
            .unwrap();
        (row.get("seq"), row.get("link"))
    };
    sqlx::query("DELETE FROM audit_events WHERE seq = $1")
        .bind(first.0)
        .execute(v.pool())
        .await
        .unwrap();
    let missing = v.verify_events().await.unwrap();
    assert!(
        missing
            .problem
            .as_ref()
            .is_some_and(|p| p.0 == first.0 && p.1.contains("missing")),
        "{missing:?}"
    );
    // ... and the base moved forward over them by hand does not hold.
    sqlx::query("UPDATE audit_base SET seq = seq + 1, link = $1")
        .bind(first.1)
        .execute(v.pool())
        .await
        .unwrap();
    let moved = v.verify_events().await.unwrap();
    assert!(
        moved
            .problem
            .as_ref()
            .is_some_and(|p| p.1.contains("record of pruned events was altered")),
        "{moved:?}"
    );
    assert!(!v.verify_new_events(100).await.unwrap().ok());

    // An immutable policy refuses a prune inside its retention, and without one any prune.
    let immutable = AuditPolicy {
        retention_days: Some(365),
        immutable: true,
        log_all_access: false,
    };
    let events = async || {
        v.list_events(&"action=audit_policy_set".parse().unwrap(), 10)
            .await
            .unwrap()
    };
    assert_eq!(
        v.set_audit_policy(immutable, "test", "serve:start")
            .await
            .unwrap(),
        immutable
    );
    v.set_audit_policy(immutable, "test", "serve:start")
        .await
        .unwrap();
    assert_eq!(events().await.len(), 1, "unchanged: not written again");
    let early = v.prune_events(Millis::now(), "cli:ops").await.unwrap_err();
    assert!(
        early
            .to_string()
            .contains("immutable with a retention of 365 days"),
        "{early}"
    );
    // Once immutable, only tighter: a mutable one-day policy leaves it as it is (log_all_access
    // follows what is asked), a longer retention is taken.
    let loose = AuditPolicy {
        retention_days: Some(1),
        immutable: false,
        log_all_access: true,
    };
    let kept = v
        .set_audit_policy(loose, "test", "serve:reload")
        .await
        .unwrap();
    assert_eq!(
        kept,
        AuditPolicy {
            log_all_access: true,
            ..immutable
        }
    );
    assert!(v.prune_events(Millis::now(), "cli:ops").await.is_err());
    // log_all_access, once on, stays on too.
    let longer = AuditPolicy {
        retention_days: Some(400),
        ..immutable
    };
    assert_eq!(
        v.set_audit_policy(longer, "test", "serve:reload")
            .await
            .unwrap(),
        AuditPolicy {
            log_all_access: true,
            ..longer
        }
    );
    let forever = AuditPolicy {
        retention_days: None,
        log_all_access: true,
        ..immutable
    };
    assert_eq!(
        v.set_audit_policy(forever, "test", "serve:start")
            .await
            .unwrap(),
        forever
    );
    // For ever stays for ever.
    assert_eq!(
        v.set_audit_policy(immutable, "test", "serve:start")
            .await
            .unwrap(),
        forever
    );
    let never = v.prune_events(Millis(0), "cli:ops").await.unwrap_err();
    assert!(
        never.to_string().contains("no event may be pruned"),
        "{never}"
    );
    let stored = v.audit_policy().await.unwrap().unwrap();
    assert_eq!(stored.policy, forever);
    let changes = events().await;
    assert_eq!(changes.len(), 4);
    assert_eq!(changes[0].details["was"]["retention_days"], 400);
    assert_eq!(changes[2].details["asked"]["immutable"], false);
    v.close().await;
    db.cleanup().await;
}

/// The last event written before `t`.
async fn cutoff_seq(v: &Vault, t: keyward_core::Millis) -> i64 {
    sqlx::query("SELECT MAX(seq) AS s FROM audit_events WHERE at < $1")
        .bind(t.0)
        .fetch_one(v.pool())
        .await
        .unwrap()
        .get("s")
}

async fn count_events(v: &Vault) -> usize {
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_events")
        .fetch_one(v.pool())
        .await
        .unwrap()
        .get("n");
    n as usize
}
