//! `keyward events`: the audit log, listed and verified.

use std::process::ExitCode;

use anyhow::Result;

use crate::backend::Backend;
use crate::cli::EventsCommand;
use crate::output::{Table, print_json, time};

pub(crate) async fn events(backend: &Backend, cmd: EventsCommand) -> Result<ExitCode> {
    match cmd {
        EventsCommand::List {
            filter,
            limit,
            json,
        } => {
            let events = backend.list_events(&filter, limit).await?;
            if json {
                print_json(&events)?;
            } else {
                let mut t = Table::new([
                    "SEQ", "TIME", "ACTOR", "ORG", "CATEGORY", "ACTION", "TARGET", "OUTCOME",
                ]);
                for e in events {
                    t.row([
                        e.seq.to_string(),
                        time(e.at),
                        e.actor,
                        e.org.unwrap_or_else(|| "-".into()),
                        e.category.to_string(),
                        e.action,
                        e.target,
                        e.outcome.as_str().into(),
                    ]);
                }
                t.print();
            }
        }
        EventsCommand::Verify { json } => {
            let report = backend.verify_events().await?;
            if json {
                print_json(&report)?;
            } else if let Some((seq, problem)) = &report.problem {
                say!(
                    "audit chain BROKEN at event {seq}: {problem} ({} event(s) verified before it)",
                    report.checked
                );
            } else if report.pruned_through > 0 {
                say!(
                    "audit chain intact: {} event(s) verified (events up to {} were pruned; the chain is proved from the sealed record of where it then began)",
                    report.checked,
                    report.pruned_through
                );
            } else {
                say!("audit chain intact: {} event(s) verified", report.checked);
            }
            if !report.ok() {
                return Ok(ExitCode::FAILURE);
            }
        }
        EventsCommand::Prune { older_than, json } => {
            let report = backend.prune_events(older_than).await?;
            if json {
                print_json(&report)?;
            } else {
                say!(
                    "{} event(s) removed; the log now begins after event {}",
                    report.removed,
                    report.through_seq
                );
                if let Some(sink) = &report.kept_for_sink {
                    say!("(older events are kept until the audit sink {sink} has taken them)");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
