//! What the console keeps in the server's memory: the one-time ids of forms that show a secret
//! once (so that reloading the answer cannot make a second token), and the master-key rotation
//! started from the console, with its progress.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use keyward_core::Millis;

/// How many used form ids are remembered (a form id is only needed until its page is left).
const REMEMBERED_FORMS: usize = 10_000;

/// The console's share of the server's state.
#[derive(Default, Debug)]
pub(crate) struct ConsoleState {
    used_forms: Mutex<(HashSet<String>, VecDeque<String>)>,
    rotation: Mutex<Option<Arc<Mutex<Rotation>>>>,
}

/// A rotation started from the console.
#[derive(Clone, Debug)]
pub(crate) struct Rotation {
    pub(crate) started_at: Millis,
    pub(crate) by: String,
    pub(crate) done: u64,
    pub(crate) total: u64,
    /// `None` while it runs; then what it did, or why it stopped.
    pub(crate) finished: Option<Result<String, String>>,
}

/// A new random form id.
pub(crate) fn form_id() -> String {
    let mut bytes = [0u8; 16];
    // The system RNG does not fail on the platforms Keyward runs on; a zero id would only
    // make the form single-use across all pages.
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ConsoleState {
    /// Whether `id` is a form id seen for the first time (and now remembered as used).
    pub(crate) fn first_use(&self, id: &str) -> bool {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let mut guard = self.used_forms.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        if !set.insert(id.to_owned()) {
            return false;
        }
        order.push_back(id.to_owned());
        if order.len() > REMEMBERED_FORMS
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }

    /// The rotation started last, if any.
    pub(crate) fn rotation(&self) -> Option<Rotation> {
        let guard = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .map(|r| r.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Starts tracking a new rotation, unless one is running; the handle to report progress.
    pub(crate) fn start_rotation(&self, by: &str) -> Option<Arc<Mutex<Rotation>>> {
        let mut guard = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = guard.as_ref()
            && running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .finished
                .is_none()
        {
            return None;
        }
        let run = Arc::new(Mutex::new(Rotation {
            started_at: Millis::now(),
            by: by.to_owned(),
            done: 0,
            total: 0,
            finished: None,
        }));
        *guard = Some(run.clone());
        Some(run)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_form_id_works_once_and_only_if_it_is_one() {
        let state = ConsoleState::default();
        let id = form_id();
        assert!(state.first_use(&id));
        assert!(!state.first_use(&id));
        assert!(state.first_use(&form_id()));
        assert!(!state.first_use(""));
        assert!(!state.first_use("not-a-form-id"));
    }

    #[test]
    fn one_rotation_runs_at_a_time() {
        let state = ConsoleState::default();
        let run = state.start_rotation("token:a").unwrap();
        assert!(state.start_rotation("token:b").is_none());
        run.lock().unwrap().finished = Some(Ok("done".into()));
        assert!(state.start_rotation("token:b").is_some());
        assert_eq!(state.rotation().unwrap().by, "token:b");
    }
}
