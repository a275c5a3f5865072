//! Who acts, beyond the actor's name: a person signed in through single sign-on is recorded
//! as `EMAIL (sso)`, and every event they cause carries their issuer and subject in its
//! details (`sso: {issuer, subject}`), which the email alone does not pin down. The server
//! runs a person's requests inside [`as_person`]; the events those requests write are tagged
//! where they are staged, whichever operation writes them. Likewise the request an event was
//! written for: the server runs each request inside [`for_request`], and its events carry the
//! request id (`request_id`) that its access log line and its answer's `x-request-id` carry.

use std::future::Future;

use keyward_core::audit::NewEvent;
use serde_json::{Value, json};

use crate::Person;

tokio::task_local! {
    static PERSON: Person;
    static REQUEST_ID: String;
}

/// Runs `f` for the request `id`: the events it writes carry the id in their details.
pub async fn for_request<F: Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// Adds `key: value` to an event's details (wrapping details that are not an object), unless
/// it is there.
fn add_detail(event: &mut NewEvent, key: &str, value: Value) {
    match &mut event.details {
        Value::Object(map) => {
            map.entry(key).or_insert(value);
        }
        Value::Null => event.details = json!({ key: value }),
        other => {
            let was = other.take();
            event.details = json!({ key: value, "details": was });
        }
    }
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

/// Adds the person's issuer and subject to `event`, when it is theirs, and the id of the
/// request it was written for.
pub(crate) fn tag(event: &mut NewEvent) {
    let _ = PERSON.try_with(|p| {
        if event.actor != person_actor(p) {
            return;
        }
        let who = json!({ "issuer": p.issuer, "subject": p.subject });
        add_detail(event, "sso", who);
    });
    let _ = REQUEST_ID.try_with(|id| add_detail(event, "request_id", json!(id)));
}
