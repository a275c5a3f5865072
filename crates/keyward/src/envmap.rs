//! Environment maps: the variables for one or more resolved credentials, applied to a child
//! process's `Command` (never to this process's own environment).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use keyward_core::credential::key_hint;
use keyward_core::env::{EnvValue, EnvVar, provider_env};
use keyward_core::resolve::Resolved;
use secrecy::{ExposeSecret as _, SecretString};

/// Variables to give a child process, in the order of their first insertion; a later variable
/// of the same name replaces an earlier one's value.
#[derive(Debug, Clone, Default)]
pub struct EnvMap {
    vars: Vec<EnvVar>,
    /// Where each name is in `vars` (a replacement is a lookup, not a scan: a file of 200 000
    /// variables costs linear time).
    index: std::collections::HashMap<String, usize>,
    /// How each secret is shown when masked (the key hint, or `***`).
    masks: BTreeMap<String, String>,
    /// Which resolved credential wrote each variable, to refuse a second one writing it.
    writers: BTreeMap<String, Writer>,
}

/// Who wrote a variable: a provider and where its key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Writer {
    provider: &'static str,
    from: String,
}

impl Writer {
    fn of(resolved: &Resolved) -> Self {
        Self {
            provider: resolved.provider.id,
            from: keyward_core::env::described_source(resolved),
        }
    }
}

impl EnvMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The map of one resolved credential.
    pub fn from_resolved(resolved: &Resolved) -> Self {
        let mut map = Self::new();
        map.add_resolved(resolved);
        map
    }

    /// Adds the variables of a resolved credential of another provider. Two providers never
    /// write one variable silently (an `openai_compatible` credential without an `env_prefix`
    /// writes `OPENAI_API_KEY`, as `openai` does): that is refused, naming both credentials,
    /// the variable and how to choose.
    pub fn extend_resolved(&mut self, resolved: &Resolved) -> Result<(), crate::Error> {
        let writer = Writer::of(resolved);
        for var in provider_env(resolved) {
            if let Some(earlier) = self.writers.get(&var.name)
                && earlier.provider != writer.provider
            {
                return Err(crate::Error::Config(keyward_core::env::collision(
                    &var.name,
                    (earlier.provider, &earlier.from),
                    (writer.provider, &writer.from),
                )));
            }
        }
        self.add_resolved(resolved);
        Ok(())
    }

    fn add_resolved(&mut self, resolved: &Resolved) {
        let writer = Writer::of(resolved);
        for var in provider_env(resolved) {
            let mask = match &var.value {
                EnvValue::Secret(s) | EnvValue::SecretFile(s) => key_hint(resolved.provider, s),
                EnvValue::Plain(_) => String::new(),
            };
            self.writers.insert(var.name.clone(), writer.clone());
            self.insert(var, mask);
        }
    }

    /// Adds a public value.
    pub fn insert_plain(&mut self, name: &str, value: String) {
        self.insert(
            EnvVar {
                name: name.to_owned(),
                value: EnvValue::Plain(value),
            },
            String::new(),
        );
    }

    /// Adds a secret, shown as `mask` where masked.
    pub fn insert_secret(&mut self, name: &str, value: SecretString, mask: &str) {
        self.insert(
            EnvVar {
                name: name.to_owned(),
                value: EnvValue::Secret(value),
            },
            mask.to_owned(),
        );
    }

    /// Adds a secret that the child reads from a file (written when applied).
    pub fn insert_secret_file(&mut self, name: &str, value: SecretString, mask: &str) {
        self.insert(
            EnvVar {
                name: name.to_owned(),
                value: EnvValue::SecretFile(value),
            },
            mask.to_owned(),
        );
    }

    /// Adds every variable of `other`, replacing those of the same name.
    pub fn extend(&mut self, other: EnvMap) {
        for var in other.vars {
            let mask = other.masks.get(&var.name).cloned().unwrap_or_default();
            match other.writers.get(&var.name) {
                Some(w) => self.writers.insert(var.name.clone(), w.clone()),
                None => self.writers.remove(&var.name),
            };
            self.insert(var, mask);
        }
    }

    fn insert(&mut self, var: EnvVar, mask: String) {
        if !mask.is_empty() {
            self.masks.insert(var.name.clone(), mask);
        } else {
            self.masks.remove(&var.name);
        }
        match self.index.get(&var.name) {
            Some(&i) => self.vars[i] = var,
            None => {
                self.index.insert(var.name.clone(), self.vars.len());
                self.vars.push(var);
            }
        }
    }

    /// Keeps only the variables for which `keep` says yes.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.vars.retain(|v| keep(&v.name));
        self.index = self
            .vars
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.clone(), i))
            .collect();
        let index = &self.index;
        self.masks.retain(|k, _| index.contains_key(k));
        self.writers.retain(|k, _| index.contains_key(k));
    }

    /// Whether a variable of this name is in the map.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The variables.
    pub fn vars(&self) -> &[EnvVar] {
        &self.vars
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Every secret value with the text that replaces it in masked output. A key file's JSON
    /// is there whole, and so is the private key inside it, decoded and JSON-escaped, since a
    /// program is likelier to print that part alone.
    pub fn secrets(&self) -> Vec<(SecretString, String)> {
        let mut out = Vec::new();
        for v in &self.vars {
            let (EnvValue::Secret(s) | EnvValue::SecretFile(s)) = &v.value else {
                continue;
            };
            let mask = self.masks.get(&v.name).map_or("***", String::as_str);
            out.push((s.clone(), mask.to_owned()));
            if let EnvValue::SecretFile(s) = &v.value {
                out.extend(embedded_private_key(s));
            }
        }
        out
    }

    /// Sets the variables on `cmd`. A secret that clients read from a file (the Vertex
    /// service-account JSON) is written to a new file readable only by this user, in
    /// `$XDG_RUNTIME_DIR` when there is one (memory-backed), else the temporary directory; the
    /// returned guard deletes those files when dropped, so keep it until the child has exited.
    ///
    /// This never touches the calling process's environment: `std::env::set_var` is unsound
    /// while other threads read the environment (hence `unsafe` since Rust 2024), and would hand
    /// the keys to every other child and library in the process too.
    pub fn apply(&self, cmd: &mut Command) -> std::io::Result<EnvGuard> {
        let mut guard = EnvGuard { files: Vec::new() };
        for var in &self.vars {
            match &var.value {
                EnvValue::Plain(v) => {
                    cmd.env(&var.name, v);
                }
                EnvValue::Secret(s) => {
                    cmd.env(&var.name, s.expose_secret());
                }
                EnvValue::SecretFile(s) => {
                    let path = guard.write_private(s)?;
                    cmd.env(&var.name, path);
                }
            }
        }
        Ok(guard)
    }
}

/// Owns the private files an [`EnvMap`] wrote; deletes them when dropped.
#[derive(Debug)]
pub struct EnvGuard {
    files: Vec<tempfile::TempPath>,
}

impl EnvGuard {
    /// The files written.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|p| p.to_path_buf()).collect()
    }

    fn write_private(&mut self, secret: &SecretString) -> std::io::Result<PathBuf> {
        use std::io::Write as _;
        let dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        // tempfile creates the file exclusively, with mode 0600 on Unix.
        let mut file = tempfile::Builder::new()
            .prefix("keyward-")
            .suffix(".json")
            .tempfile_in(&dir)?;
        // No fsync: the file lives only as long as the child, and syncing would push the key
        // to persistent storage when the directory is on disk.
        file.write_all(secret.expose_secret().as_bytes())?;
        let path = file.into_temp_path();
        let shown = path.to_path_buf();
        self.files.push(path);
        Ok(shown)
    }

    /// Deletes the files now, reporting failures (dropping the guard does the same silently).
    pub fn close(self) -> std::io::Result<()> {
        for f in self.files {
            f.close()?;
        }
        Ok(())
    }
}

/// The `private_key` of a service-account JSON document, as the child might print it: decoded,
/// and as it stands JSON-escaped in the file.
fn embedded_private_key(json: &SecretString) -> Vec<(SecretString, String)> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(json.expose_secret()) else {
        return Vec::new();
    };
    let Some(key) = doc.get("private_key").and_then(|k| k.as_str()) else {
        return Vec::new();
    };
    let mut out = vec![(SecretString::from(key), "***".to_owned())];
    if let Ok(escaped) = serde_json::to_string(key) {
        let inner = escaped.trim_matches('"');
        if inner != key {
            out.push((SecretString::from(inner), "***".to_owned()));
        }
    }
    out
}
