//! Audit sinks: the audit trail shipped, after each event is committed, to where compliance
//! teams read it: syslog (RFC 5424 over TCP or a Unix socket), an HTTP endpoint (JSON lines,
//! signed with an HMAC) and a JSON-lines file.
//!
//! Each sink has a cursor in the store (`audit_sinks`): the last event it took. A shipper reads
//! the committed events after it, oldest first, delivers them, and only then moves the cursor,
//! so every event arrives, in order, at least once, across restarts and outages of the sink (a
//! batch in flight when either side stops is sent again). One replica ships to a sink at a time
//! (a lease in the same row); the others stand by and take over when the lease lapses.
//!
//! Shipping reads the log and never writes to it: operations never wait for a sink, and a sink
//! that falls behind shows it (`keyward_audit_sink_lag_events` in `/metrics`, `gateway
//! status`) without slowing anything.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hmac::Mac as _;
use keyward_core::Millis;
use keyward_store::{ShippedEvent, Vault};
use secrecy::{ExposeSecret as _, SecretBox};
use tokio::io::AsyncWriteExt as _;

/// Events per delivery.
const BATCH: i64 = 256;
/// How often a shipper with nothing to send looks for new events.
const POLL: Duration = Duration::from_millis(250);
/// How long a replica holds a sink after it last renewed it.
const LEASE: Duration = Duration::from_secs(30);
/// Renewed this often (a third of the lease).
const RENEW: Duration = Duration::from_secs(10);
/// How often a replica that does not hold a sink looks whether it may take it (and how far it
/// got).
const STANDBY: Duration = Duration::from_secs(2);
/// The longest pause between two tries of a failing sink.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The signature header of the HTTP sink: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
pub const SIGNATURE_HEADER: &str = "keyward-signature";

/// Where a sink delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// RFC 5424 messages, octet-counted (RFC 6587), over TCP to `host:port`.
    SyslogTcp(String),
    /// RFC 5424 messages, one datagram each, to a Unix socket (`/dev/log`, rsyslog's imuxsock).
    SyslogUnix(PathBuf),
    /// JSON lines POSTed in batches, signed (`keyward-signature`).
    Http(reqwest::Url),
    /// JSON lines appended to a file (0600), synced before the cursor moves.
    File(PathBuf),
}

impl SinkSpec {
    /// The sink's name: its cursor's key, and what metrics and status show. A URL's query is
    /// left out (it may hold a token).
    pub fn name(&self) -> String {
        match self {
            SinkSpec::SyslogTcp(addr) => format!("syslog+tcp://{addr}"),
            SinkSpec::SyslogUnix(path) => format!("syslog+unix://{}", path.display()),
            SinkSpec::Http(url) => {
                let mut url = url.clone();
                url.set_query(None);
                url.to_string()
            }
            SinkSpec::File(path) => format!("file://{}", path.display()),
        }
    }
}

impl std::str::FromStr for SinkSpec {
    type Err = String;

    /// `syslog+tcp://HOST:PORT`, `syslog+unix:///PATH`, `http(s)://...`, `file:///PATH`.
    /// A refusal never quotes the spec: it may hold a password, a token or a pasted key.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        // Only an HTTP sink may have a query (it stays out of the sink's name); a user or
        // password is refused everywhere (it would show in the process list).
        let credentials = |rest: &str| {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            authority.contains('@')
        };
        let refused_credentials = || {
            "an audit sink with a user or password is refused (it would show in the process list); HTTP sinks are authenticated by the HMAC signature".to_owned()
        };
        let local = |rest: &str, scheme: &str| {
            if credentials(rest) {
                return Err(refused_credentials());
            }
            if rest.contains(['?', '#', '\0']) {
                return Err(format!(
                    "a {scheme} audit sink is a path: no query or fragment ({scheme}:///PATH)"
                ));
            }
            let path = PathBuf::from(rest);
            if path.is_absolute() {
                Ok(path)
            } else {
                Err(format!(
                    "a {scheme} audit sink's path must be absolute ({scheme}:///PATH)"
                ))
            }
        };
        if let Some(rest) = s.strip_prefix("syslog+tcp://") {
            if credentials(rest) {
                return Err(refused_credentials());
            }
            let rest = rest.trim_end_matches('/');
            let ok = rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok || rest.contains(['/', '@', '?', '#']) {
                return Err("a syslog+tcp audit sink is syslog+tcp://HOST:PORT".into());
            }
            return Ok(SinkSpec::SyslogTcp(rest.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("syslog+unix://") {
            return local(rest, "syslog+unix").map(SinkSpec::SyslogUnix);
        }
        if let Some(rest) = s.strip_prefix("file://") {
            return local(rest, "file").map(SinkSpec::File);
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            let Ok(url) = reqwest::Url::parse(s) else {
                return Err("an HTTP audit sink is not a URL".into());
            };
            if !url.username().is_empty() || url.password().is_some() {
                return Err(refused_credentials());
            }
            if url.host().is_none() || url.fragment().is_some() {
                return Err("an HTTP audit sink is http(s)://HOST/PATH (no fragment)".into());
            }
            return Ok(SinkSpec::Http(url));
        }
        Err(
            "an audit sink is syslog+tcp://HOST:PORT, syslog+unix:///PATH, https://URL or file:///PATH"
                .into(),
        )
    }
}

/// The sinks a server ships to, and the key that signs the HTTP ones.
#[derive(Debug, Default)]
pub struct SinkSettings {
    /// The sinks.
    pub sinks: Vec<SinkSpec>,
    /// The HMAC key of the HTTP sinks' signature (required when there is one).
    pub hmac_key: Option<SecretBox<Vec<u8>>>,
}

impl SinkSettings {
    /// Checks that what the sinks need is there.
    pub fn check(&self) -> Result<(), String> {
        let http = self.sinks.iter().any(|s| matches!(s, SinkSpec::Http(_)));
        match &self.hmac_key {
            None if http => Err("an HTTP audit sink needs a signing key: set KEYWARD_AUDIT_SINK_HMAC_KEY_FILE (or KEYWARD_AUDIT_SINK_HMAC_KEY), 32 random bytes or more".into()),
            Some(k) if k.expose_secret().len() < 16 => {
                Err("the audit sinks' HMAC key is too short: use 32 random bytes or more".into())
            }
            _ => Ok(()),
        }
    }
}

/// What a sink's shipper reports, for `/metrics` and `gateway status`.
#[derive(Debug)]
pub(crate) struct SinkState {
    pub(crate) name: String,
    /// The last event delivered (as this process last saw its cursor).
    delivered: AtomicI64,
    /// The log's head when last looked at.
    head: AtomicI64,
    /// Whether this process ships to it now (else another replica does).
    shipping: AtomicBool,
    /// Deliveries that failed.
    failures: AtomicU64,
    /// Events delivered by this process.
    sent: AtomicU64,
    /// When the last delivery succeeded (ms since the epoch; 0: never).
    last_success: AtomicI64,
    /// Why the last delivery failed, if the last one did (no secret: sinks' errors name the
    /// sink and the transport's error).
    last_error: std::sync::Mutex<Option<String>>,
    /// The process holding the sink, when not this one.
    held_by: std::sync::Mutex<Option<String>>,
}

/// A sink as status shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SinkStatus {
    /// The sink (`syslog+tcp://host:port`, an URL without its query, `file:///path`).
    pub name: String,
    /// The last event it took.
    pub delivered_seq: i64,
    /// Events committed and not delivered yet.
    pub lag: i64,
    /// Whether this replica ships to it (else another holds it: a replica, or a process that
    /// stopped without giving it up, whose lease lapses within 30 s; `delivered_seq` is as
    /// this one last read it).
    pub shipping: bool,
    /// Which process holds the sink, when this one does not.
    pub held_by: Option<String>,
    /// When it last took a batch from this replica (ms since the epoch).
    pub last_success: Option<Millis>,
    /// Why the last delivery failed, while it is failing.
    pub last_error: Option<String>,
}

impl SinkState {
    fn new(name: String) -> Self {
        Self {
            name,
            delivered: AtomicI64::new(0),
            head: AtomicI64::new(0),
            shipping: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            last_success: AtomicI64::new(0),
            last_error: std::sync::Mutex::new(None),
            held_by: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn status(&self) -> SinkStatus {
        let delivered = self.delivered.load(Ordering::Relaxed);
        let success = self.last_success.load(Ordering::Relaxed);
        SinkStatus {
            name: self.name.clone(),
            delivered_seq: delivered,
            lag: (self.head.load(Ordering::Relaxed) - delivered).max(0),
            shipping: self.shipping.load(Ordering::Relaxed),
            held_by: self
                .held_by
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            last_success: (success > 0).then_some(Millis(success)),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    fn failed(&self, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(sink = %self.name, error = %why, "audit sink delivery failed; it will be retried");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
}

/// The sinks of a server: their states, and how to start their shippers.
#[derive(Debug, Default)]
pub(crate) struct Sinks {
    specs: Vec<SinkSpec>,
    hmac_key: Option<Arc<SecretBox<Vec<u8>>>>,
    pub(crate) states: Vec<Arc<SinkState>>,
}

impl Sinks {
    pub(crate) fn new(settings: SinkSettings) -> Self {
        Self {
            states: settings
                .sinks
                .iter()
                .map(|s| Arc::new(SinkState::new(s.name())))
                .collect(),
            specs: settings.sinks,
            hmac_key: settings.hmac_key.map(Arc::new),
        }
    }

    /// Starts a shipper per sink; they end when `stop` says so (the batch in flight first).
    pub(crate) fn spawn(
        &self,
        vault: &Vault,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.specs
            .iter()
            .zip(&self.states)
            .map(|(spec, state)| {
                let shipper = Shipper {
                    vault: vault.clone(),
                    state: state.clone(),
                    out: Out::new(spec.clone(), self.hmac_key.clone()),
                };
                tokio::spawn(shipper.run(stop.clone()))
            })
            .collect()
    }

    /// The `/metrics` lines.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.states.is_empty() {
            return;
        }
        let label = |s: &SinkState| s.name.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str("# HELP keyward_audit_sink_lag_events Audit events committed and not yet delivered to the sink.\n# TYPE keyward_audit_sink_lag_events gauge\n");
        for s in &self.states {
            let _ = writeln!(
                out,
                "keyward_audit_sink_lag_events{{sink=\"{}\"}} {}",
                label(s),
                s.status().lag
            );
        }
        out.push_str("# HELP keyward_audit_sink_delivered_seq The last audit event the sink took.\n# TYPE keyward_audit_sink_delivered_seq gauge\n");
        for s in &self.states {
            let _ = writeln!(
                out,
                "keyward_audit_sink_delivered_seq{{sink=\"{}\"}} {}",
                label(s),
                s.delivered.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP keyward_audit_sink_events_sent_total Audit events this process delivered to the sink.\n# TYPE keyward_audit_sink_events_sent_total counter\n");
        for s in &self.states {
            let _ = writeln!(
                out,
                "keyward_audit_sink_events_sent_total{{sink=\"{}\"}} {}",
                label(s),
                s.sent.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP keyward_audit_sink_failures_total Deliveries to the sink that failed (each is retried).\n# TYPE keyward_audit_sink_failures_total counter\n");
        for s in &self.states {
            let _ = writeln!(
                out,
                "keyward_audit_sink_failures_total{{sink=\"{}\"}} {}",
                label(s),
                s.failures.load(Ordering::Relaxed)
            );
        }
    }
}

struct Shipper {
    vault: Vault,
    state: Arc<SinkState>,
    out: Out,
}

impl Shipper {
    async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let name = self.state.name.clone();
        let holder = self.vault.instance_id().to_owned();
        let mut backoff = Duration::from_secs(1);
        // `None`: not held (or to be claimed again).
        let mut cursor: Option<i64> = None;
        let mut renewed = tokio::time::Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            let pause = match self.step(&name, &holder, &mut cursor, &mut renewed).await {
                Ok(Step::Sent) => {
                    backoff = Duration::from_secs(1);
                    Duration::ZERO
                }
                Ok(Step::Idle) => POLL,
                Ok(Step::Standby) => STANDBY,
                Err(why) => {
                    self.state.failed(why);
                    // The connection may be the problem: the next try opens a new one.
                    self.out.reset();
                    let pause = backoff;
                    // Jittered, so that replicas do not retry in step.
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    pause + Duration::from_millis(jitter_ms(pause))
                }
            };
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
        if self.state.shipping.swap(false, Ordering::Relaxed)
            && let Err(e) = self.vault.release_sink(&name, &holder).await
        {
            tracing::debug!(sink = %name, error = %e, "cannot give up the sink's lease; it lapses");
        }
    }

    async fn step(
        &mut self,
        name: &str,
        holder: &str,
        cursor: &mut Option<i64>,
        renewed: &mut tokio::time::Instant,
    ) -> Result<Step, String> {
        let store = |e: keyward_store::VaultError| format!("the store: {e}");
        if cursor.is_none() || renewed.elapsed() >= RENEW {
            *cursor = self
                .vault
                .claim_sink(name, holder, LEASE, 0)
                .await
                .map_err(store)?;
            *renewed = tokio::time::Instant::now();
        }
        let head = self.vault.audit_event_count().await.map_err(store)?;
        self.state.head.store(head, Ordering::Relaxed);
        let Some(at) = *cursor else {
            self.state.shipping.store(false, Ordering::Relaxed);
            // Another process holds it; show how far it got.
            if let Ok(all) = self.vault.sink_cursors().await
                && let Some(c) = all.iter().find(|c| c.name == name)
            {
                self.state.delivered.store(c.seq, Ordering::Relaxed);
                *self.state.held_by.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(c.holder.clone());
            }
            return Ok(Step::Standby);
        };
        self.state.shipping.store(true, Ordering::Relaxed);
        *self.state.held_by.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.state.delivered.store(at, Ordering::Relaxed);
        if head <= at {
            return Ok(Step::Idle);
        }
        let batch = self.vault.events_after(at, BATCH).await.map_err(store)?;
        let Some(last) = batch.last().map(|e| e.event.seq) else {
            return Ok(Step::Idle);
        };
        tokio::time::timeout(DELIVERY_TIMEOUT, self.out.deliver(&batch))
            .await
            .map_err(|_| format!("no answer within {DELIVERY_TIMEOUT:?}"))??;
        if self
            .vault
            .advance_sink(name, holder, at, last)
            .await
            .map_err(store)?
        {
            *cursor = Some(last);
            self.state.delivered.store(last, Ordering::Relaxed);
            self.state
                .sent
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.state
                .last_success
                .store(Millis::now().0, Ordering::Relaxed);
            *self
                .state
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
        } else {
            // Another replica took the sink over: it sends from the cursor it finds.
            *cursor = None;
        }
        Ok(Step::Sent)
    }
}

enum Step {
    Sent,
    Idle,
    Standby,
}

/// Up to a quarter of `pause`, in milliseconds.
fn jitter_ms(pause: Duration) -> u64 {
    let quarter = u64::try_from(pause.as_millis() / 4).unwrap_or(0);
    if quarter == 0 {
        0
    } else {
        u64::from(getrandom::u32().unwrap_or(0)) % quarter
    }
}

/// A sink's transport.
enum Out {
    SyslogTcp {
        addr: String,
        conn: Option<tokio::net::TcpStream>,
    },
    SyslogUnix(PathBuf),
    Http {
        url: reqwest::Url,
        client: Option<reqwest::Client>,
        key: Arc<SecretBox<Vec<u8>>>,
    },
    File(PathBuf),
}

impl Out {
    fn new(spec: SinkSpec, key: Option<Arc<SecretBox<Vec<u8>>>>) -> Self {
        match spec {
            SinkSpec::SyslogTcp(addr) => Out::SyslogTcp { addr, conn: None },
            SinkSpec::SyslogUnix(path) => Out::SyslogUnix(path),
            SinkSpec::Http(url) => Out::Http {
                url,
                client: None,
                // Checked at start (`SinkSettings::check`); an empty key would still sign.
                key: key.unwrap_or_else(|| Arc::new(SecretBox::new(Box::default()))),
            },
            SinkSpec::File(path) => Out::File(path),
        }
    }

    fn reset(&mut self) {
        if let Out::SyslogTcp { conn, .. } = self {
            *conn = None;
        }
    }

    async fn deliver(&mut self, batch: &[ShippedEvent]) -> Result<(), String> {
        match self {
            Out::SyslogTcp { addr, conn } => {
                let stream = match conn {
                    Some(stream) => stream,
                    None => conn.insert(
                        tokio::net::TcpStream::connect(addr.as_str())
                            .await
                            .map_err(|e| format!("cannot connect: {e}"))?,
                    ),
                };
                let mut frames = Vec::new();
                for e in batch {
                    let msg = syslog_message(e);
                    frames.extend_from_slice(format!("{} ", msg.len()).as_bytes());
                    frames.extend_from_slice(msg.as_bytes());
                }
                stream
                    .write_all(&frames)
                    .await
                    .map_err(|e| format!("cannot send: {e}"))?;
                stream
                    .flush()
                    .await
                    .map_err(|e| format!("cannot send: {e}"))?;
                // TCP syslog has no acknowledgement. A receiver that went away shows as an
                // end of stream or a reset on our side: look once more before taking the batch
                // as delivered, so that a restarted receiver gets it again.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let mut probe = [0u8; 64];
                match stream.try_read(&mut probe) {
                    Ok(0) => Err("the receiver closed the connection".into()),
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                        Err(format!("the connection failed: {e}"))
                    }
                    _ => Ok(()),
                }
            }
            Out::SyslogUnix(path) => {
                let socket = tokio::net::UnixDatagram::unbound()
                    .map_err(|e| format!("cannot open a socket: {e}"))?;
                for e in batch {
                    socket
                        .send_to(syslog_message(e).as_bytes(), &*path)
                        .await
                        .map_err(|e| format!("cannot send: {e}"))?;
                }
                Ok(())
            }
            Out::Http { url, client, key } => {
                let client = match client {
                    Some(c) => c,
                    None => client.insert(crate::identity::http_client_with(DELIVERY_TIMEOUT)?),
                };
                let body = json_lines(batch);
                let t = Millis::now().0 / 1000;
                let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(
                    key.expose_secret(),
                )
                .map_err(|_| "the HMAC key is unusable".to_owned())?;
                mac.update(format!("{t}.").as_bytes());
                mac.update(&body);
                let signature = hex::encode(mac.finalize().into_bytes());
                let first = batch.first().map_or(0, |e| e.event.seq);
                let last = batch.last().map_or(0, |e| e.event.seq);
                let answer = client
                    .post(url.clone())
                    .header("content-type", "application/x-ndjson")
                    .header(SIGNATURE_HEADER, format!("t={t},v1={signature}"))
                    .header("keyward-events", format!("{first}-{last}"))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("cannot send: {}", e.without_url()))?;
                if answer.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("the receiver answered {}", answer.status()))
                }
            }
            Out::File(path) => {
                let path = path.clone();
                let body = json_lines(batch);
                tokio::task::spawn_blocking(move || append(&path, &body))
                    .await
                    .map_err(|e| format!("the writer failed: {e}"))?
            }
        }
    }
}

/// Appends `body` to the file (made 0600 if new) and syncs it. Opened for every batch, so a
/// rotated file is followed.
fn append(path: &std::path::Path, body: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot open the file: {e}"))?;
    file.write_all(body)
        .map_err(|e| format!("cannot write the file: {e}"))?;
    file.sync_data()
        .map_err(|e| format!("cannot sync the file: {e}"))
}

/// An event as a sink receives it: the API's event, with its time also as RFC 3339 and its
/// chain link (hex).
fn event_json(e: &ShippedEvent) -> serde_json::Value {
    let mut v = serde_json::to_value(&e.event).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.insert("time".into(), rfc3339(e.event.at).into());
        map.insert("link".into(), hex::encode(&e.link).into());
    }
    v
}

fn json_lines(batch: &[ShippedEvent]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in batch {
        // A Value always serialises.
        let _ = serde_json::to_writer(&mut body, &event_json(e));
        body.push(b'\n');
    }
    body
}

fn rfc3339(t: Millis) -> String {
    humantime::format_rfc3339_millis(t.to_system_time()).to_string()
}

/// The facility of every message: 13, "log audit".
const FACILITY: u8 = 13;

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOST keyward PID ACTION [meta sequenceId="SEQ"] JSON`
/// (severity informational, warning for a failure; `meta` and `sequenceId` are RFC 5424's own
/// registered names).
fn syslog_message(e: &ShippedEvent) -> String {
    let severity = match e.event.outcome {
        keyward_core::audit::Outcome::Success => 6,
        keyward_core::audit::Outcome::Failure => 4,
    };
    let msgid: String = e
        .event
        .action
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    format!(
        "<{}>1 {} {} keyward {} {} [meta sequenceId=\"{}\"] {}",
        FACILITY * 8 + severity,
        rfc3339(e.event.at),
        hostname(),
        std::process::id(),
        if msgid.is_empty() { "-".into() } else { msgid },
        e.event.seq,
        event_json(e)
    )
}

/// This host's name as RFC 5424 takes it (printable ASCII, at most 255), `-` if unknown.
fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let name: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        if name.is_empty() { "-".into() } else { name }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_name_themselves_without_secrets() {
        let tcp: SinkSpec = "syslog+tcp://127.0.0.1:514".parse().unwrap();
        assert_eq!(tcp.name(), "syslog+tcp://127.0.0.1:514");
        let unix: SinkSpec = "syslog+unix:///dev/log".parse().unwrap();
        assert_eq!(unix, SinkSpec::SyslogUnix("/dev/log".into()));
        let http: SinkSpec = "https://siem.example/in?token=abc".parse().unwrap();
        assert_eq!(http.name(), "https://siem.example/in");
        let file: SinkSpec = "file:///var/log/keyward/audit.jsonl".parse().unwrap();
        assert_eq!(file.name(), "file:///var/log/keyward/audit.jsonl");
        for bad in [
            "syslog+tcp://host",
            "syslog+tcp://host:99999",
            "syslog+tcp://bob:SECRETPW@127.0.0.1:514",
            "syslog+tcp://127.0.0.1:514?token=SECRETTOKEN",
            "file://relative/path",
            "file://user:SECRETPW@/tmp/x",
            "file:///tmp/x.jsonl?token=SECRETTOKEN",
            "syslog+unix:///dev/log?token=SECRETTOKEN",
            "https://user:SECRETPW@siem.example/",
            "http://127.0.0.1/ingest#SECRETFRAG",
            "ftp://SECRETHOST",
        ] {
            let err = bad.parse::<SinkSpec>().unwrap_err();
            assert!(!err.contains("SECRET"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_syslog_message_is_rfc5424() {
        let e = ShippedEvent {
            event: keyward_core::audit::AuditEvent {
                seq: 7,
                at: Millis(1_700_000_000_123),
                actor: "cli:ops".into(),
                org: Some("acme".into()),
                category: keyward_core::audit::Category::SecretManagement,
                action: "credential_create".into(),
                target: "credential:c1".into(),
                outcome: keyward_core::audit::Outcome::Failure,
                details: serde_json::json!({"n": 1}),
            },
            link: vec![0xab; 32],
        };
        let m = syslog_message(&e);
        assert!(m.starts_with("<108>1 2023-11-14T22:13:20.123Z "), "{m}");
        assert!(
            m.contains(" keyward ") && m.contains(" credential_create [meta sequenceId=\"7\"] {"),
            "{m}"
        );
        let json: serde_json::Value = serde_json::from_str(&m[m.find('{').unwrap()..]).unwrap();
        assert_eq!(json["seq"], 7);
        assert_eq!(json["link"], "ab".repeat(32));
    }
}
