//! The audit log: one JSON line per request (DESIGN §9), written off the request path by
//! a dedicated thread fed through a bounded channel; rotated by size; flushed on
//! shutdown. A record that cannot be queued or written is counted
//! (`tierwise_audit_lost_total`) and logged — never silently lost.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

/// `[audit]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub path: PathBuf,
    /// Include the request's messages and the answer. Default false.
    pub include_content: bool,
    /// Rotate when the file grows past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.N`).
    pub keep: usize,
    /// Records that may wait for the writer.
    pub queue: usize,
}

enum Message {
    Record(Value),
    /// Write everything queued so far, flush, and stop.
    Close(oneshot::Sender<()>),
}

/// The sending side, shared by all requests.
pub struct Audit {
    /// `None` when no audit log is configured.
    tx: Option<mpsc::Sender<Message>>,
    pub include_content: bool,
    /// Records that could not be queued or written.
    lost: Arc<AtomicU64>,
    /// The writer thread, joined on close.
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Audit {
    pub fn disabled() -> Self {
        Audit { tx: None, include_content: false, lost: Arc::new(AtomicU64::new(0)), writer: Mutex::new(None) }
    }

    /// Opens the file and starts the writer thread.
    pub fn start(config: &AuditConfig) -> std::io::Result<Self> {
        let file = open_append(&config.path)?;
        let size = file.metadata()?.len();
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let lost = Arc::new(AtomicU64::new(0));
        let writer = Writer { config: config.clone(), out: BufWriter::new(file), size, lost: lost.clone() };
        let handle = std::thread::Builder::new().name("tierwise-audit".into()).spawn(move || writer.run(rx))?;
        Ok(Audit { tx: Some(tx), include_content: config.include_content, lost, writer: Mutex::new(Some(handle)) })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a record without waiting. A full queue or a closed log loses the record,
    /// and counts it.
    pub fn record(&self, record: Value) {
        let Some(tx) = &self.tx else { return };
        if let Err(err) = tx.try_send(Message::Record(record)) {
            let lost = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
            let why = match err {
                mpsc::error::TrySendError::Full(_) => "the queue is full",
                mpsc::error::TrySendError::Closed(_) => "the log is closed",
            };
            if lost.is_power_of_two() {
                warn!(lost, "audit record lost: {why}");
            }
        }
    }

    /// Records lost so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Writes everything queued, flushes and stops the writer.
    pub async fn close(&self) {
        let Some(tx) = &self.tx else { return };
        let (done_tx, done_rx) = oneshot::channel();
        if tx.send(Message::Close(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

struct Writer {
    config: AuditConfig,
    out: BufWriter<File>,
    size: u64,
    lost: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        while let Some(message) = rx.blocking_recv() {
            let mut close = None;
            self.handle(message, &mut close);
            // Drain what is queued before flushing: one flush per burst.
            while close.is_none() {
                match rx.try_recv() {
                    Ok(message) => self.handle(message, &mut close),
                    Err(_) => break,
                }
            }
            if let Err(err) = self.out.flush() {
                error!(error = %err, path = %self.config.path.display(), "audit log flush failed");
            }
            if let Some(done) = close {
                rx.close();
                // Anything that slipped in after the close message is counted as lost.
                while let Ok(Message::Record(_)) = rx.try_recv() {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                }
                let _ = done.send(());
                return;
            }
        }
    }

    fn handle(&mut self, message: Message, close: &mut Option<oneshot::Sender<()>>) {
        match message {
            Message::Record(record) => self.write(&record),
            Message::Close(done) => *close = Some(done),
        }
    }

    fn write(&mut self, record: &Value) {
        let mut line = record.to_string();
        line.push('\n');
        if self.size > 0 && self.size + line.len() as u64 > self.config.max_bytes {
            if let Err(err) = self.rotate() {
                error!(error = %err, path = %self.config.path.display(), "audit log rotation failed");
            }
        }
        match self.out.write_all(line.as_bytes()) {
            Ok(()) => self.size += line.len() as u64,
            Err(err) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                error!(error = %err, path = %self.config.path.display(), "audit record could not be written");
            }
        }
    }

    /// `path` → `path.1` → … → `path.keep` (the oldest is dropped), then a new `path`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let path = &self.config.path;
        for n in (1..self.config.keep).rev() {
            let from = numbered(path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(path, n + 1))?;
            }
        }
        if self.config.keep > 0 {
            std::fs::rename(path, numbered(path, 1))?;
        } else {
            std::fs::remove_file(path)?;
        }
        self.out = BufWriter::new(open_append(path)?);
        self.size = 0;
        Ok(())
    }
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `2026-11-21T06:25:39.123Z`.
pub fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::state::period::civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let at = UNIX_EPOCH + Duration::from_millis(1_795_240_882_123);
        assert_eq!(timestamp(at), "2026-11-21T06:01:22.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..10], "2000-02-29");
    }

    fn config(dir: &Path, max_bytes: u64) -> AuditConfig {
        AuditConfig { path: dir.join("audit.jsonl"), include_content: false, max_bytes, keep: 2, queue: 1024 }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tierwise-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn writes_every_record_and_flushes_on_close() {
        let dir = temp_dir("close");
        let audit = Audit::start(&config(&dir, 1 << 30)).unwrap();
        for i in 0..1000 {
            audit.record(json!({"id": i}));
        }
        audit.close().await;
        let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        let ids: Vec<u64> =
            text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, (0..1000).collect::<Vec<_>>());
        assert_eq!(audit.lost(), 0);
        audit.record(json!({"id": "late"}));
        assert_eq!(audit.lost(), 1, "a record after close is counted, not silently dropped");
    }

    #[tokio::test]
    async fn rotates_by_size_keeping_n_files() {
        let dir = temp_dir("rotate");
        let audit = Audit::start(&config(&dir, 200)).unwrap();
        for i in 0..40 {
            audit.record(json!({"id": i, "pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}));
        }
        audit.close().await;
        let current = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        assert!(current.len() <= 200 && !current.is_empty());
        assert!(dir.join("audit.jsonl.1").exists() && dir.join("audit.jsonl.2").exists());
        assert!(!dir.join("audit.jsonl.3").exists(), "keep = 2");
        let last: Value = serde_json::from_str(current.lines().last().unwrap()).unwrap();
        assert_eq!(last["id"], 39);
    }
}
