//! Signature checks done ahead, on the machine's other cores, without changing one event of a run.
//!
//! The simulator runs every node on one thread, and most of that thread's time was Ed25519: a
//! signature made by one node is checked by another a few thousand events later. A check is a pure
//! function of (key, bytes, signature), so [`VerifyAhead`] hands every signature a node makes to worker
//! threads the moment it is made, and the receiver's check finds the answer waiting. The answer is
//! the one `verify_strict` gives on exactly those bytes, whoever computed it and whenever, so a run
//! replays the same events and has the same trace hash with or without it.
//!
//! What the receiver checks is not always what was signed (an adversary bends an envelope, a key is
//! wrong, the bytes are rebuilt differently): the table is keyed by key and signature and keeps the
//! signed bytes, and any difference is checked on the spot. A signature nobody checks (its packet was
//! lost) is dropped from the table once [`AHEAD_SLOTS_MAX`] newer ones arrived.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use proto_core::crypto::{Signature, SignatureProvider, VerifyingKey};
use proto_core::Passport;

/// Signatures remembered between being made and being checked. A message is checked within a few
/// thousand events of being signed; an hour of 10,000 nodes makes about a million signatures.
pub const AHEAD_SLOTS_MAX: usize = 1 << 16;
/// Signatures waiting for a worker; beyond it a new one is not queued (its receiver checks it).
pub const AHEAD_QUEUE_MAX: usize = 1 << 14;
/// Worker threads at most, whatever the machine has.
pub const AHEAD_WORKERS_MAX: usize = 8;

/// Key and signature: what names a check in the table.
type Tag = [u8; 96];

/// Where one signature's check is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Made; no worker has it yet.
    Queued,
    /// A worker (or the receiver itself) is checking it.
    Running,
    /// Checked: the answer of `verify_strict`.
    Done(bool),
}

struct Slot {
    canonical: Arc<[u8]>,
    state: State,
}

#[derive(Default)]
struct Table {
    slots: HashMap<Tag, Slot>,
    /// Tags in the order they were made, for dropping the oldest.
    order: VecDeque<Tag>,
}

struct Shared {
    table: Mutex<Table>,
    /// Signalled whenever a check is done.
    done: Condvar,
    inner: Arc<dyn SignatureProvider>,
    stats: Stats,
}

/// How the receivers' checks were answered.
#[derive(Debug, Default)]
pub struct Stats {
    /// Found done.
    pub ready: AtomicU64,
    /// Found running on a worker, and waited for.
    pub waited: AtomicU64,
    /// Found still queued (the workers were behind): checked by the receiver.
    pub behind: AtomicU64,
    /// Not in the table, or other bytes than were signed: checked by the receiver.
    pub missed: AtomicU64,
}

struct Job {
    tag: Tag,
    key: VerifyingKey,
    canonical: Arc<[u8]>,
    signature: Signature,
}

/// A provider whose checks of the signatures it made run ahead on worker threads (see the module).
pub struct VerifyAhead {
    shared: Arc<Shared>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl VerifyAhead {
    /// Wraps `inner` with `workers` threads (at least one, at most [`AHEAD_WORKERS_MAX`]).
    pub fn new(inner: Arc<dyn SignatureProvider>, workers: usize) -> Self {
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
            done: Condvar::new(),
            inner,
            stats: Stats::default(),
        });
        let (tx, rx) = mpsc::sync_channel(AHEAD_QUEUE_MAX);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..workers.clamp(1, AHEAD_WORKERS_MAX))
            .map(|_| {
                let (shared, rx) = (shared.clone(), rx.clone());
                std::thread::spawn(move || work(&shared, &rx))
            })
            .collect();
        Self { shared, jobs: Some(tx), workers }
    }

    /// One worker per core but the simulator's own.
    pub fn with_spare_cores(inner: Arc<dyn SignatureProvider>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(inner, cores.saturating_sub(1))
    }

    /// How the checks were answered so far.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

impl Drop for VerifyAhead {
    fn drop(&mut self) {
        self.jobs.take(); // the workers see the channel close and return
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl SignatureProvider for VerifyAhead {
    fn sign(&self, passport: &Passport, canonical: &[u8]) -> [u8; 64] {
        let signature = self.shared.inner.sign(passport, canonical);
        let key = *passport.agent_id().key();
        let tag = tag(&key, &signature);
        let canonical: Arc<[u8]> = canonical.into();
        {
            let mut table = self.shared.lock();
            if table.slots.contains_key(&tag) {
                return signature; // the same bytes signed again: one check serves both
            }
            table.insert(tag, canonical.clone());
        }
        let job = Job { tag, key, canonical, signature: Signature::from_bytes(&signature) };
        if let Some(jobs) = &self.jobs {
            // A full queue leaves the signature queued in the table: its receiver checks it itself.
            let _ = jobs.try_send(job);
        }
        signature
    }

    fn verify_strict(&self, key: &VerifyingKey, canonical: &[u8], signature: &Signature) -> bool {
        let tag = tag(key, &signature.to_bytes());
        let stats = &self.shared.stats;
        let mut table = self.shared.lock();
        let state = match table.slots.get_mut(&tag) {
            Some(slot) if *slot.canonical == *canonical => {
                let state = slot.state;
                if state == State::Queued {
                    slot.state = State::Running; // ours now: a worker that reaches it skips it
                }
                state
            }
            _ => {
                drop(table);
                stats.missed.fetch_add(1, Ordering::Relaxed);
                return self.shared.inner.verify_strict(key, canonical, signature);
            }
        };
        match state {
            State::Done(ok) => {
                stats.ready.fetch_add(1, Ordering::Relaxed);
                ok
            }
            State::Running => {
                stats.waited.fetch_add(1, Ordering::Relaxed);
                loop {
                    match table.slots.get(&tag).map(|s| s.state) {
                        Some(State::Done(ok)) => return ok,
                        Some(_) => table = self.shared.done.wait(table).unwrap_or_else(PoisonError::into_inner),
                        // Dropped while we waited (a burst of newer signatures): check it here.
                        None => {
                            drop(table);
                            return self.shared.inner.verify_strict(key, canonical, signature);
                        }
                    }
                }
            }
            State::Queued => {
                drop(table);
                stats.behind.fetch_add(1, Ordering::Relaxed);
                let ok = self.shared.inner.verify_strict(key, canonical, signature);
                self.shared.finish(&tag, ok);
                ok
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A worker that panicked mid-check left no half-written slot behind (states change whole).
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an answer, if the slot is still there, and wakes whoever waits.
    fn finish(&self, tag: &Tag, ok: bool) {
        if let Some(slot) = self.lock().slots.get_mut(tag) {
            slot.state = State::Done(ok);
        }
        self.done.notify_all();
    }
}

impl Table {
    fn insert(&mut self, tag: Tag, canonical: Arc<[u8]>) {
        while self.order.len() >= AHEAD_SLOTS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.slots.remove(&old);
            }
        }
        self.slots.insert(tag, Slot { canonical, state: State::Queued });
        self.order.push_back(tag);
    }
}

/// A worker: takes jobs until the provider is dropped, skipping those a receiver took first.
fn work(shared: &Shared, jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = match jobs.lock().unwrap_or_else(PoisonError::into_inner).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        {
            let mut table = shared.lock();
            match table.slots.get_mut(&job.tag) {
                Some(slot) if slot.state == State::Queued => slot.state = State::Running,
                _ => continue,
            }
        }
        let ok = shared.inner.verify_strict(&job.key, &job.canonical, &job.signature);
        shared.finish(&job.tag, ok);
    }
}

fn tag(key: &VerifyingKey, signature: &[u8; 64]) -> Tag {
    let mut tag = [0u8; 96];
    tag[..32].copy_from_slice(key.as_bytes());
    tag[32..].copy_from_slice(signature);
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_core::crypto::Ed25519;

    fn ahead() -> VerifyAhead {
        VerifyAhead::new(Arc::new(Ed25519), 1)
    }

    #[test]
    fn a_signature_made_here_is_answered_as_verify_strict_answers_it() {
        let (p, q) = (Passport::from_seed([1; 32]), Passport::from_seed([2; 32]));
        let a = ahead();
        let sig = Signature::from_bytes(&a.sign(&p, b"hello"));
        assert!(a.verify_strict(p.agent_id().key(), b"hello", &sig));
        // Other bytes, another key: refused, as Ed25519 refuses them.
        assert!(!a.verify_strict(p.agent_id().key(), b"hellp", &sig));
        assert!(!a.verify_strict(q.agent_id().key(), b"hello", &sig));
        // Checked again (a second receiver): the same answer.
        assert!(a.verify_strict(p.agent_id().key(), b"hello", &sig));
        let s = a.stats();
        assert_eq!(s.missed.load(Ordering::Relaxed), 2, "the bent checks are done on the spot");
    }

    #[test]
    fn a_signature_never_made_here_is_checked_on_the_spot() {
        let p = Passport::from_seed([3; 32]);
        let a = ahead();
        let sig = Signature::from_bytes(&Ed25519.sign(&p, b"x"));
        assert!(a.verify_strict(p.agent_id().key(), b"x", &sig));
        assert!(!a.verify_strict(p.agent_id().key(), b"x", &Signature::from_bytes(&[0; 64])));
        assert_eq!(a.stats().missed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn many_signatures_all_answer_right_and_every_one_is_found_in_the_table() {
        let a = ahead();
        let passports: Vec<Passport> = (0..8u8).map(|i| Passport::from_seed([i + 10; 32])).collect();
        let made: Vec<_> = (0..2_000u32)
            .map(|i| {
                let p = &passports[i as usize % passports.len()];
                let bytes = format!("message {i}").into_bytes();
                (p, a.sign(p, &bytes), bytes)
            })
            .collect();
        for (p, sig, bytes) in &made {
            assert!(a.verify_strict(p.agent_id().key(), bytes, &Signature::from_bytes(sig)));
        }
        let s = a.stats();
        let answered = s.ready.load(Ordering::Relaxed) + s.waited.load(Ordering::Relaxed);
        assert_eq!(answered + s.behind.load(Ordering::Relaxed), 2_000);
        assert_eq!(s.missed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_table_forgets_the_oldest_beyond_its_bound_and_still_answers() {
        let a = VerifyAhead::new(Arc::new(Ed25519), 1);
        let p = Passport::from_seed([4; 32]);
        let first = a.sign(&p, b"first");
        {
            let mut table = a.shared.lock();
            for i in 0..AHEAD_SLOTS_MAX as u64 {
                let mut t = [0u8; 96];
                t[..8].copy_from_slice(&i.to_le_bytes());
                t[95] = 1;
                table.insert(t, Arc::from(&b""[..]));
            }
            assert_eq!(table.slots.len(), AHEAD_SLOTS_MAX);
            assert_eq!(table.order.len(), AHEAD_SLOTS_MAX);
        }
        assert!(a.verify_strict(p.agent_id().key(), b"first", &Signature::from_bytes(&first)));
        assert_eq!(a.stats().missed.load(Ordering::Relaxed), 1, "dropped, so checked on the spot");
    }
}
