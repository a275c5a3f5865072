//! Usage charts: requests per hour by status, laid out on the server as plain numbers that a
//! template draws as inline SVG (no script, no image requests), with the same numbers in a
//! table beside it.

use keyward_core::Millis;
use keyward_store::{HOUR_MS, UsageBucket};

/// The drawing's size in SVG units; the page scales it to its width.
const WIDTH: i64 = 720;
const HEIGHT: i64 = 120;

/// One bar: an hour (or a day), split into what succeeded and what failed.
pub(crate) struct Bar {
    pub(crate) x: i64,
    pub(crate) width: i64,
    /// The successful part (2xx and 3xx): top and height.
    pub(crate) ok_y: i64,
    pub(crate) ok_h: i64,
    /// The failed part (4xx, 5xx, no answer), stacked on top.
    pub(crate) err_y: i64,
    pub(crate) err_h: i64,
    /// What a pointer over it says.
    pub(crate) title: String,
}

/// One line of the table beside the chart.
pub(crate) struct Row {
    pub(crate) label: String,
    pub(crate) ok: u64,
    pub(crate) client_errors: u64,
    pub(crate) server_errors: u64,
    pub(crate) no_answer: u64,
}

/// A chart over a window ending now.
pub(crate) struct Chart {
    pub(crate) title: &'static str,
    pub(crate) width: i64,
    pub(crate) height: i64,
    pub(crate) bars: Vec<Bar>,
    /// Rows with any requests, newest first.
    pub(crate) rows: Vec<Row>,
    pub(crate) total: u64,
    pub(crate) peak: u64,
}

/// Requests of `buckets` in `slots` slots of `slot_hours` hours each, the last ending at the
/// current hour's end.
pub(crate) fn chart(
    title: &'static str,
    buckets: &[UsageBucket],
    now: Millis,
    slots: usize,
    slot_hours: i64,
) -> Chart {
    let slot_ms = slot_hours * HOUR_MS;
    let end = now.0 - now.0.rem_euclid(HOUR_MS) + HOUR_MS;
    let start = end - slot_ms * i64::try_from(slots).unwrap_or(0);
    let mut rows: Vec<Row> = (0..slots)
        .map(|i| {
            let at = start + slot_ms * i64::try_from(i).unwrap_or(0);
            let label = humantime::format_rfc3339_seconds(Millis(at).to_system_time()).to_string();
            // "2026-12-01T14:00:00Z" → "12-01 14:00"; a day's slots keep the date only.
            let label = if slot_hours >= 24 {
                label[5..10].to_owned()
            } else {
                format!("{} {}", &label[5..10], &label[11..16])
            };
            Row {
                label,
                ok: 0,
                client_errors: 0,
                server_errors: 0,
                no_answer: 0,
            }
        })
        .collect();
    for b in buckets {
        if b.hour.0 < start || b.hour.0 >= end {
            continue;
        }
        let Ok(i) = usize::try_from((b.hour.0 - start) / slot_ms) else {
            continue;
        };
        let Some(row) = rows.get_mut(i) else { continue };
        match b.status {
            0 => row.no_answer += b.requests,
            200..=399 => row.ok += b.requests,
            400..=499 => row.client_errors += b.requests,
            _ => row.server_errors += b.requests,
        }
    }
    let sum = |r: &Row| r.ok + r.client_errors + r.server_errors + r.no_answer;
    let peak = rows.iter().map(sum).max().unwrap_or(0);
    let total = rows.iter().map(sum).sum();
    let n = i64::try_from(slots.max(1)).unwrap_or(1);
    let slot_w = WIDTH / n;
    let scale = |v: u64| {
        let h = v
            .saturating_mul(u64::try_from(HEIGHT).unwrap_or(0))
            .checked_div(peak)
            .unwrap_or(0);
        i64::try_from(h).unwrap_or(0)
    };
    let bars = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let ok_h = scale(r.ok);
            let err_h = scale(r.client_errors + r.server_errors + r.no_answer);
            Bar {
                x: i64::try_from(i).unwrap_or(0) * slot_w + 1,
                width: (slot_w - 2).max(1),
                ok_y: HEIGHT - ok_h,
                ok_h,
                err_y: HEIGHT - ok_h - err_h,
                err_h,
                title: format!("{}: {} requests, {} failed", r.label, sum(r), sum(r) - r.ok),
            }
        })
        .collect();
    let rows = rows.into_iter().rev().filter(|r| sum(r) > 0).collect();
    Chart {
        title,
        width: WIDTH,
        height: HEIGHT,
        bars,
        rows,
        total,
        peak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_land_in_their_slot_split_by_status_and_scaled_to_the_peak() {
        let now = Millis(1_800_000_000_000 + 30 * 60 * 1000);
        let this_hour = Millis(now.0 - now.0.rem_euclid(HOUR_MS));
        let an_hour_ago = Millis(this_hour.0 - HOUR_MS);
        let buckets = [
            UsageBucket {
                hour: this_hour,
                status: 200,
                requests: 30,
            },
            UsageBucket {
                hour: this_hour,
                status: 429,
                requests: 10,
            },
            UsageBucket {
                hour: an_hour_ago,
                status: 0,
                requests: 20,
            },
            // Outside the window: not drawn, not counted.
            UsageBucket {
                hour: Millis(this_hour.0 - 30 * HOUR_MS),
                status: 200,
                requests: 999,
            },
        ];
        let c = chart("24 h", &buckets, now, 24, 1);
        assert_eq!((c.total, c.peak), (60, 40));
        assert_eq!(c.bars.len(), 24);
        let last = &c.bars[23];
        assert_eq!((last.ok_h, last.err_h), (90, 30));
        assert_eq!(last.err_y + last.err_h, last.ok_y);
        assert_eq!(c.bars[22].err_h, 60);
        assert_eq!(c.rows.len(), 2);
        assert_eq!((c.rows[0].ok, c.rows[0].client_errors), (30, 10));
        assert_eq!(c.rows[1].no_answer, 20);
        let week = chart("7 days", &buckets, now, 7, 24);
        assert_eq!(week.total, 60 + 999);
    }
}
