//! Who acts, beyond the actor's name: a person signed in through single sign-on is recorded
//! as `EMAIL (sso)`, and every event they cause carries their issuer and subject in its
//! details (`sso: {issuer, subject}`), which the email alone does not pin down. The server
//! runs a person's requests inside [`as_person`]; the events those requests write are tagged
//! where they are staged, whichever operation writes them.

use std::future::Future;

use keyward_core::audit::NewEvent;
use serde_json::{Value, json};

use crate::Person;

tokio::task_local! {
    static PERSON: Person;
}

/// Runs `f` as `person`: the events it writes under the person's actor name carry their
/// issuer and subject.
pub async fn as_person<F: Future>(person: Person, f: F) -> F::Output {
    PERSON.scope(person, f).await
}

/// The actor name of a person: `EMAIL (sso)`, or their subject when the provider gives no
/// email.
pub(crate) fn person_actor(p: &Person) -> String {
    format!("{} (sso)", p.email.as_deref().unwrap_or(&p.subject))
}

/// Adds the person's issuer and subject to `event`, when it is theirs.
pub(crate) fn tag(event: &mut NewEvent) {
    let _ = PERSON.try_with(|p| {
        if event.actor != person_actor(p) {
            return;
        }
        let who = json!({ "issuer": p.issuer, "subject": p.subject });
        match &mut event.details {
            Value::Object(map) => {
                map.entry("sso").or_insert(who);
            }
            Value::Null => event.details = json!({ "sso": who }),
            other => {
                let was = other.take();
                event.details = json!({ "sso": who, "details": was });
            }
        }
    });
}
