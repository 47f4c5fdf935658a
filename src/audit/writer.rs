//! The audit writer: one thread per process that numbers, chains and writes
//! lines, so a hand-off only pays for handing an event to a queue.

use super::line::{self, AuditRecord, GENESIS};
use super::sink::{FileSink, StreamSink, last_line_of};
use ring::hmac;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};

/// Events waiting to be written, at most (past it, events are counted as dropped).
pub const QUEUE_CAPACITY: usize = 65_536;
/// Lines kept for the stream while Redis does not answer, at most.
const STREAM_BACKLOG: usize = 100_000;
/// Lines written per batch, at most.
const BATCH: usize = 512;
/// After writing a batch, the writer waits this long before taking the next
/// one. Under load, events then pile up while it is not parked on the
/// queue, so sending one costs no futex wake-up (two per hand-off
/// otherwise, and a context switch each); a line reaches its sinks at most
/// this much later. When idle, the writer parks and the next event wakes it.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(2);

/// Queue statistics for `/metrics`.
#[derive(Default, Debug)]
pub struct QueueStats {
    pub depth: AtomicI64,
    pub dropped: AtomicU64,
    pub written: AtomicU64,
    pub sink_errors: AtomicU64,
}

/// The sending side, held by [`super::Audit`].
pub struct Queue {
    sender: SyncSender<AuditRecord>,
    pub stats: Arc<QueueStats>,
}

impl Queue {
    /// Never blocks: a full queue drops the event and counts it.
    pub fn push(&self, record: AuditRecord) {
        match self.sender.try_send(record) {
            Ok(()) => {
                self.stats.depth.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!("audit queue full or closed: an audit event was dropped");
            }
        }
    }
}

/// Where the writer writes.
pub struct Sinks {
    pub file: Option<FileSink>,
    pub stream: Option<StreamSink>,
}

/// Starts the writer thread for `node`, continuing the node's chain from
/// the last line it left in `file_path` (if any).
pub fn start(
    key: hmac::Key,
    node: String,
    sinks: Sinks,
    file_path: Option<&Path>,
) -> std::io::Result<Queue> {
    let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
    let stats = Arc::new(QueueStats::default());
    let (seq, prev) = file_path
        .and_then(|path| last_line_of(path, &node))
        .and_then(|last| {
            line::parse(&last)
                .ok()
                .map(|(parsed, _)| (parsed.record.seq, parsed.mac))
        })
        .unwrap_or((0, GENESIS));
    let thread_stats = Arc::clone(&stats);
    std::thread::Builder::new()
        .name("audit-writer".to_owned())
        .spawn(move || run(&key, &receiver, sinks, seq, prev, &thread_stats))?;
    Ok(Queue { sender, stats })
}

fn run(
    key: &hmac::Key,
    receiver: &Receiver<AuditRecord>,
    mut sinks: Sinks,
    mut seq: u64,
    mut prev: [u8; 32],
    stats: &QueueStats,
) {
    let mut backlog: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    // Ends when every sender is gone, after writing what was queued.
    let mut next = receiver.recv();
    while let Ok(first) = next {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        stats.depth.fetch_sub(batch.len() as i64, Ordering::Relaxed);
        let lines: Vec<String> = batch
            .into_iter()
            .map(|mut record| {
                seq += 1;
                record.seq = seq;
                let (text, mac) = line::sign(key, &prev, &record);
                prev = mac;
                text
            })
            .collect();
        if let Some(file) = sinks.file.as_mut()
            && let Err(e) = file.write(&lines)
        {
            stats.sink_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot write the audit file");
        }
        if let Some(stream) = sinks.stream.as_mut() {
            // Lines the stream missed are resent, in order, before newer
            // ones: an outage must not leave a gap that reads as tampering.
            backlog.extend(lines.iter().cloned());
            while backlog.len() > STREAM_BACKLOG {
                backlog.pop_front();
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            let pending: Vec<String> = backlog.iter().cloned().collect();
            match stream.write(&pending) {
                Ok(()) => backlog.clear(),
                Err(e) => {
                    stats.sink_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, waiting = backlog.len(), "cannot write the audit stream; will resend");
                }
            }
        }
        stats
            .written
            .fetch_add(lines.len() as u64, Ordering::Relaxed);
        std::thread::sleep(COALESCE);
        next = match receiver.try_recv() {
            Ok(record) => Ok(record),
            Err(TryRecvError::Empty) => receiver.recv(),
            Err(TryRecvError::Disconnected) => break,
        };
    }
}
