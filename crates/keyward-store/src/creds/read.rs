//! Reading credentials: one by id, listings and searches (paged in SQL), and comparing a
//! stored secret with a given one in constant time.

use keyward_core::credential::CredentialView;
use keyward_core::{CredentialId, OrgId, Provider};
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::AssertSqlSafe;

use super::{COLUMNS, CredRow};
use crate::{Vault, VaultError};

impl Vault {
    pub(crate) async fn load_credential(&self, id: &CredentialId) -> Result<CredRow, VaultError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM credentials WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.inner.pool)
        .await?
        .ok_or_else(|| VaultError::NotFound(format!("credential {id}")))?;
        CredRow::from_row(&row)
    }

    /// One credential, masked.
    pub async fn get_credential(&self, id: &CredentialId) -> Result<CredentialView, VaultError> {
        Ok(self.load_credential(id).await?.view(&self.inner.keyring))
    }

    /// Credentials, masked, optionally of one organization and provider. A record that cannot
    /// be decrypted is listed with status `undecryptable`; it never fails the list.
    pub async fn list_credentials(
        &self,
        org: Option<&OrgId>,
        provider: Option<&Provider>,
    ) -> Result<Vec<CredentialView>, VaultError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM credentials \
             WHERE ($1 = '' OR org_id = $1) AND ($2 = '' OR provider = $2) \
             ORDER BY org_id, provider, priority, created_at, id"
        )))
        .bind(org.map_or("", OrgId::as_str))
        .bind(provider.map_or("", |p| p.id))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(CredRow::from_row(r)?.view(&self.inner.keyring)))
            .collect()
    }

    /// One page of [`Vault::list_credentials`] (`limit` rows after `offset`, in the same
    /// order) and the number of rows in all: paged in SQL, so only the rows returned are read
    /// and opened.
    #[tracing::instrument(name = "store.list_credentials", level = "info", skip_all)]
    pub async fn list_credentials_page(
        &self,
        org: Option<&OrgId>,
        provider: Option<&Provider>,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<CredentialView>, u64), VaultError> {
        self.find_credentials(org, provider, None, CredentialSort::Listing, limit, offset)
            .await
    }

    /// Like [`Vault::list_credentials_page`], narrowed to credentials whose name or key hint
    /// holds `search` (any case), in the order `sort` says: how a person finds one credential
    /// among hundreds.
    pub async fn find_credentials(
        &self,
        org: Option<&OrgId>,
        provider: Option<&Provider>,
        search: Option<&str>,
        sort: CredentialSort,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<CredentialView>, u64), VaultError> {
        // The conditions are written only when given, so the listing index serves them.
        let mut conditions: Vec<String> = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        if let Some(o) = org {
            binds.push(o.as_str().to_owned());
            conditions.push(format!("org_id = ${}", binds.len()));
        }
        if let Some(p) = provider {
            binds.push(p.id.to_owned());
            conditions.push(format!("provider = ${}", binds.len()));
        }
        if let Some(text) = search.map(str::trim).filter(|t| !t.is_empty()) {
            // `%`, `_` and the escape itself are taken literally.
            let escaped: String = text
                .to_lowercase()
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            binds.push(format!("%{escaped}%"));
            let n = binds.len();
            conditions.push(format!(
                "(LOWER(name) LIKE ${n} ESCAPE '\\' OR LOWER(key_hint) LIKE ${n} ESCAPE '\\')"
            ));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let n = binds.len();
        let page_sql = format!(
            "SELECT {COLUMNS} FROM credentials {filter} ORDER BY {} LIMIT ${} OFFSET ${}",
            sort.order_by(),
            n + 1,
            n + 2
        );
        let count_sql = format!("SELECT COUNT(*) FROM credentials {filter}");
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut page = sqlx::query(AssertSqlSafe(page_sql));
        let mut count = sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_sql));
        for b in &binds {
            page = page.bind(b.clone());
            count = count.bind(b.clone());
        }
        let rows = page
            .bind(to_i64(limit))
            .bind(to_i64(offset))
            .fetch_all(&self.inner.pool)
            .await?;
        let total = count.fetch_one(&self.inner.pool).await?;
        let items = rows
            .iter()
            .map(|r| Ok(CredRow::from_row(r)?.view(&self.inner.keyring)))
            .collect::<Result<Vec<_>, VaultError>>()?;
        Ok((items, u64::try_from(total).unwrap_or(0)))
    }
    /// Whether a credential's stored secret equals `secret` (compared in constant time; the
    /// stored one never leaves the vault). For imports, to tell "unchanged" from "rotate".
    /// Not audited: it discloses nothing the caller does not already hold.
    pub async fn credential_secret_is(
        &self,
        id: &CredentialId,
        secret: Option<&SecretString>,
    ) -> Result<bool, VaultError> {
        use subtle::ConstantTimeEq as _;
        let row = self.load_credential(id).await?;
        let stored = row
            .open_secret(&self.inner.keyring)
            .map_err(|_| VaultError::Undecryptable(format!("credential {id}")))?;
        Ok(match (stored, secret) {
            (None, None) => true,
            (Some(a), Some(b)) => bool::from(
                a.expose_secret()
                    .trim()
                    .as_bytes()
                    .ct_eq(b.expose_secret().trim().as_bytes()),
            ),
            _ => false,
        })
    }
}

/// The order of a credential listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CredentialSort {
    /// Organization, provider, then the resolution order (priority, age): the listing index.
    #[default]
    Listing,
    /// By name.
    Name,
    /// The most recently changed first.
    Updated,
    /// The most recently used first (never used last).
    LastUsed,
}

impl CredentialSort {
    /// Parses the console's and the API's word for it.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "" | "listing" => Self::Listing,
            "name" => Self::Name,
            "updated" => Self::Updated,
            "last_used" => Self::LastUsed,
            _ => return None,
        })
    }

    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Listing => "listing",
            Self::Name => "name",
            Self::Updated => "updated",
            Self::LastUsed => "last_used",
        }
    }

    fn order_by(self) -> &'static str {
        match self {
            Self::Listing => "org_id, provider, priority, created_at, id",
            Self::Name => "LOWER(name), org_id, provider, id",
            Self::Updated => "updated_at DESC, id",
            Self::LastUsed => "COALESCE(last_used_at, 0) DESC, id",
        }
    }
}
