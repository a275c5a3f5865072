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

/// `keyward budget ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum BudgetCommand {
    /// An organization's budgets and limits, with what their current periods spent.
    List {
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a budget (dollars per day, week, month or in all) or a limit (requests or tokens
    /// per minute) for an organization, one of its gateway tokens or one of its credentials;
    /// it replaces the one of the same kind. Requests past it are refused before any provider
    /// is contacted.
    Set {
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// Only this gateway token's requests (its id).
        #[arg(long, conflicts_with = "credential")]
        token: Option<String>,
        /// Only what this credential answers (its id).
        #[arg(long)]
        credential: Option<String>,
        /// A budget in dollars, e.g. 5 or 12.50.
        #[arg(long, required_unless_present_any = ["rpm", "tpm"], conflicts_with_all = ["rpm", "tpm"])]
        usd: Option<String>,
        /// The budget's period: day, week, month or none.
        #[arg(long, default_value = "month", value_parser = ["day", "week", "month", "none"])]
        period: String,
        /// Requests per minute.
        #[arg(long, conflicts_with = "tpm")]
        rpm: Option<u64>,
        /// Tokens (input and output) per minute.
        #[arg(long)]
        tpm: Option<u64>,
        /// Percentages of a budget at which an alert goes out (audited; POSTed to --webhook).
        #[arg(long, value_delimiter = ',', default_value = "50,80,100")]
        alert: Vec<u8>,
        /// Where alerts are POSTed as JSON.
        #[arg(long)]
        webhook: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a budget or limit by its id.
    Delete {
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// The budget's id, as listed.
        id: String,
    },
}
