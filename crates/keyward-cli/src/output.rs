//! Printing: aligned tables for people, JSON for programs.

use std::io::Write as _;

use anyhow::Result;
use keyward_core::Millis;
use serde::Serialize;

/// `println!` for command output: a reader that went away (`keyward events list | head -n 1`)
/// ends the command quietly, as it ends other Unix tools, instead of a panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes command output to stdout. A closed pipe exits with status 0 at once (there is no
/// one left to tell); any other failure to write exits with status 1 and says so on stderr.
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// A plain text table with left-aligned columns.
pub(crate) struct Table<const N: usize> {
    header: [String; N],
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    pub(crate) fn new(header: [&str; N]) -> Self {
        Self {
            header: header.map(str::to_owned),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, row: [String; N]) {
        self.rows.push(row);
    }

    pub(crate) fn print(&self) {
        let mut widths = self.header.clone().map(|h| h.chars().count());
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String; N]| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == N {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<w$}  "));
                }
            }
            say!("{}", out.trim_end());
        };
        line(&self.header);
        for row in &self.rows {
            line(row);
        }
    }
}

pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A time as RFC 3339 (UTC, seconds).
pub(crate) fn time(t: Millis) -> String {
    humantime::format_rfc3339_seconds(t.to_system_time()).to_string()
}
