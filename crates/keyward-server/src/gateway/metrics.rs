//! The gateway's counters (failovers, cooldowns, recoveries, target reloads) and their
//! Prometheus lines.

use super::Gateway;

impl Gateway {
    pub(super) fn count(&self, metric: &'static str, provider: &'static str, reason: &'static str) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        *events.entry((metric, provider, reason)).or_default() += 1;
    }

    /// The Prometheus lines of the gateway.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let events = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let families = [
            (
                "failovers",
                "keyward_gateway_failovers_total",
                "Requests sent on to the next key, by provider and reason.",
            ),
            (
                "cooldowns",
                "keyward_gateway_cooldowns_total",
                "Keys set aside, by provider and reason (failing: 401/403, rate_limited: 429).",
            ),
            (
                "recoveries",
                "keyward_gateway_recoveries_total",
                "Keys that served again after being set aside, by provider.",
            ),
        ];
        for (metric, name, help) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((m, provider, reason), n) in &events {
                if *m == metric {
                    let _ = writeln!(
                        out,
                        "{name}{{provider=\"{provider}\",reason=\"{reason}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP keyward_gateway_target_reloads_total Loads of the static targets file, by outcome.\n# TYPE keyward_gateway_target_reloads_total counter\n");
        for ((m, _, outcome), n) in &events {
            if *m == "reloads" {
                let _ = writeln!(
                    out,
                    "keyward_gateway_target_reloads_total{{outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let targets = self.targets().by_id.len();
        let _ = writeln!(
            out,
            "# HELP keyward_gateway_targets Static targets loaded.\n# TYPE keyward_gateway_targets gauge\nkeyward_gateway_targets {targets}"
        );
        self.usage.render(out);
        let _ = writeln!(
            out,
            "# HELP keyward_gateway_request_events_dropped_total Audit events of gateway requests (log_all_access) dropped because the store stayed away.\n# TYPE keyward_gateway_request_events_dropped_total counter\nkeyward_gateway_request_events_dropped_total {}",
            self.request_events_dropped()
        );
    }
}
