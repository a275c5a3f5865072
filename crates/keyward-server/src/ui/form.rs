//! What the console's pages share: typed form values, the common query strings, the
//! organization a page names, and the shown-once token.

use std::collections::BTreeMap;

use keyward_core::OrgId;
use serde::Deserialize;

use crate::ApiError;

/// Every form of these pages, by input name.
pub(super) type Typed = BTreeMap<String, String>;

/// A typed value, trimmed; empty when not sent.
pub(super) fn typed<'a>(form: &'a Typed, name: &str) -> &'a str {
    form.get(name).map_or("", |v| v.trim())
}

/// `?notice=` only.
#[derive(Deserialize)]
pub(super) struct NoticeQuery {
    pub(super) notice: Option<String>,
}

/// `?org=` and `?notice=`.
#[derive(Deserialize)]
pub(super) struct OrgQuery {
    pub(super) org: Option<String>,
    pub(super) notice: Option<String>,
}

/// The organization a page or form names: none if empty; one that cannot exist is "not
/// found", like one the session cannot see (the policy decides that).
pub(super) fn named_org(asked: Option<&str>) -> Result<Option<OrgId>, ApiError> {
    match asked.map(str::trim).filter(|o| !o.is_empty()) {
        None => Ok(None),
        Some(o) => OrgId::new(o)
            .map(Some)
            .map_err(|_| ApiError::NotFound("no such organization".into())),
    }
}

/// Why a shown-once form is not done twice (or, without its one-time id, not at all).
pub(super) fn sent_before(once: &str) -> String {
    if once.is_empty() {
        "This form is out of date (it has no one-time id): fill in the form below.".to_owned()
    } else {
        "This form was already sent, and its token was shown then; it is not made again. Fill in the form below to make another.".to_owned()
    }
}

/// A token just made: shown once, with what to paste.
pub(super) struct Made {
    pub(super) token: String,
    pub(super) name: String,
    pub(super) snippet: String,
}

/// A query string of `pairs`, each value percent-encoded.
pub(super) fn url_query(pairs: &[(&str, String)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
}
