//! `keyward spend` and `keyward prices`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `keyward spend`.
#[derive(Debug, Args)]
pub(crate) struct SpendArgs {
    /// Organization slug.
    #[arg(long)]
    pub(crate) org: String,
    /// Summed by: model, credential (what answered), token (the gateway token), day, or total.
    #[arg(long, default_value = "model", value_parser = ["model", "credential", "token", "day", "total"])]
    pub(crate) by: String,
    /// From: a span back from now (7d, 24h), a date (2026-12-01) or RFC 3339.
    #[arg(long, default_value = "30d")]
    pub(crate) since: String,
    /// Until (exclusive), in the same forms; by default now.
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub(crate) json: bool,
    /// Print CSV (RFC 4180), for a spreadsheet.
    #[arg(long)]
    pub(crate) csv: bool,
}

/// `keyward prices ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum PricesCommand {
    /// The prices spend is reckoned at (per million tokens): Keyward's shipped ones with
    /// those imported on top.
    List {
        /// Only this provider's.
        #[arg(long)]
        provider: Option<String>,
        /// Only models whose name holds this.
        #[arg(long)]
        model: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import prices from a file in LiteLLM's model_prices_and_context_window.json format
    /// (admins; audited). They add to those imported before, replacing the same models.
    Import {
        /// The file ("-": standard input).
        file: PathBuf,
        /// Drop every price imported before (the shipped ones stay underneath).
        #[arg(long)]
        replace: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}
