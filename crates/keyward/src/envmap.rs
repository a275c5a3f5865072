//! Environment maps: the variables for one or more resolved credentials, applied to a child
//! process's `Command` (never to this process's own environment).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use keyward_core::credential::key_hint;
use keyward_core::env::{EnvValue, EnvVar, provider_env};
use keyward_core::resolve::Resolved;
use secrecy::{ExposeSecret as _, SecretString};

/// Variables to give a child process, in insertion order; a later variable of the same name
/// replaces an earlier one.
#[derive(Debug, Clone, Default)]
pub struct EnvMap {
    vars: Vec<EnvVar>,
    /// How each secret is shown when masked (the key hint, or `***`).
    masks: BTreeMap<String, String>,
}

impl EnvMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The map of one resolved credential.
    pub fn from_resolved(resolved: &Resolved) -> Self {
        let mut map = Self::new();
        map.extend_resolved(resolved);
        map
    }

    /// Adds the variables of a resolved credential.
    pub fn extend_resolved(&mut self, resolved: &Resolved) {
        for var in provider_env(resolved) {
            let mask = match &var.value {
                EnvValue::Secret(s) | EnvValue::SecretFile(s) => key_hint(resolved.provider, s),
                EnvValue::Plain(_) => String::new(),
            };
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

    fn insert(&mut self, var: EnvVar, mask: String) {
        self.vars.retain(|v| v.name != var.name);
        if !mask.is_empty() {
            self.masks.insert(var.name.clone(), mask);
        } else {
            self.masks.remove(&var.name);
        }
        self.vars.push(var);
    }

    /// Keeps only the variables for which `keep` says yes.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.vars.retain(|v| keep(&v.name));
        let names: Vec<String> = self.vars.iter().map(|v| v.name.clone()).collect();
        self.masks.retain(|k, _| names.contains(k));
    }

    /// The variables.
    pub fn vars(&self) -> &[EnvVar] {
        &self.vars
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Every secret value with the text that replaces it in masked output.
    pub fn secrets(&self) -> Vec<(SecretString, String)> {
        self.vars
            .iter()
            .filter_map(|v| match &v.value {
                EnvValue::Secret(s) | EnvValue::SecretFile(s) => {
                    let mask = self.masks.get(&v.name).map_or("***", String::as_str);
                    Some((s.clone(), mask.to_owned()))
                }
                EnvValue::Plain(_) => None,
            })
            .collect()
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
        file.write_all(secret.expose_secret().as_bytes())?;
        file.as_file().sync_all()?;
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
