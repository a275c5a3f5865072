//! `KEYWARD_KMS`: `KIND:KEY` or `KIND:name=value,name=value`.

use std::collections::BTreeMap;

use crate::KmsError;

/// A parsed `KEYWARD_KMS`: its kind and its settings. A bare item (no `=`) is the `key`.
///
/// ```text
/// transit:keyward-kek
/// transit:key=keyward-kek,mount=transit,address=https://bao.internal:8200,auth=approle
/// aws-kms:alias/keyward-kek
/// pkcs11:module=/usr/lib/softhsm/libsofthsm2.so,token=keyward,key=keyward-kek
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// `transit`, `aws-kms`, `pkcs11`.
    pub kind: String,
    settings: BTreeMap<String, String>,
}

impl Spec {
    /// Parses a spec. Values are not secrets (credentials come from their own variables or
    /// files), but messages quote only names anyway.
    pub fn parse(text: &str) -> Result<Self, KmsError> {
        let text = text.trim();
        let Some((kind, rest)) = text.split_once(':') else {
            return Err(KmsError::Config(
                "expected KIND:SETTINGS, such as transit:keyward-kek, aws-kms:alias/keyward-kek \
                 or pkcs11:module=PATH,token=LABEL,key=LABEL"
                    .into(),
            ));
        };
        let mut settings = BTreeMap::new();
        for item in rest.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), v.trim()),
                None => ("key", item),
            };
            if name.is_empty() || value.is_empty() {
                return Err(KmsError::Config(format!(
                    "'{kind}:' settings are name=value; one has an empty name or value"
                )));
            }
            if settings.insert(name.to_owned(), value.to_owned()).is_some() {
                return Err(KmsError::Config(format!("'{name}' is given twice")));
            }
        }
        Ok(Self {
            kind: kind.trim().to_owned(),
            settings,
        })
    }

    /// A setting, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.settings.get(name).map(String::as_str)
    }

    /// A setting that must be given.
    pub fn require(&self, name: &str, what: &str) -> Result<&str, KmsError> {
        self.get(name)
            .ok_or_else(|| KmsError::Config(format!("{}: {name}= is missing ({what})", self.kind)))
    }

    /// Refuses settings this kind does not know (a typo would otherwise be ignored).
    pub fn only(&self, known: &[&str]) -> Result<(), KmsError> {
        match self.settings.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(KmsError::Config(format!(
                "{}: unknown setting '{k}' (known: {})",
                self.kind,
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_bare_item_is_the_key_and_settings_are_name_value() {
        let s = Spec::parse("transit:keyward-kek,mount=kms/transit").unwrap();
        assert_eq!(s.kind, "transit");
        assert_eq!(s.get("key"), Some("keyward-kek"));
        assert_eq!(s.get("mount"), Some("kms/transit"));
        let s = Spec::parse("aws-kms:arn:aws:kms:eu-west-1:1:alias/k").unwrap();
        assert_eq!(s.get("key"), Some("arn:aws:kms:eu-west-1:1:alias/k"));
    }

    #[test]
    fn refuses_no_kind_twice_given_and_unknown_settings() {
        assert!(Spec::parse("keyward-kek").is_err());
        assert!(Spec::parse("transit:key=a,key=b").is_err());
        assert!(Spec::parse("transit:key=").is_err());
        let s = Spec::parse("transit:key=a,mout=x").unwrap();
        let e = s.only(&["key", "mount"]).unwrap_err().to_string();
        assert!(e.contains("unknown setting 'mout'"), "{e}");
    }
}
