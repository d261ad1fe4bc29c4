//! The anchor's durable state: one redb file, three tables, every value one version byte and a
//! postcard record. A batch of writes is one transaction (one fsync), committed before any answer that
//! follows it in the core's outputs is sent.

use std::path::{Path, PathBuf};

use proto_core::anchor::{AnchorRecords, AnchorWrite, Entry, PollSeen, Registration};
use redb::{ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::storage::{private_file, StorageError};

/// Version byte in front of every stored value.
pub const ANCHOR_RECORD_FORMAT: u8 = 1;
/// redb's page cache for the anchor, in bytes: the whole state is also held in memory, so the cache
/// only speeds up writes.
pub const ANCHOR_CACHE_BYTES: usize = 16 * 1024 * 1024;

const REGISTRATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("directory");
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("mailbox_entries");
const POLLS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("poll_replay");

/// The anchor's database.
pub struct AnchorStore {
    db: redb::Database,
    path: PathBuf,
}

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![ANCHOR_RECORD_FORMAT];
    out.extend(postcard::to_allocvec(record).unwrap_or_default());
    out
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match bytes.split_first() {
        Some((&ANCHOR_RECORD_FORMAT, rest)) => postcard::from_bytes(rest).ok(),
        _ => None,
    }
}

/// A poll's key: agent id, kind and timestamp, so the same poll is one row.
fn poll_key(seen: &PollSeen) -> Vec<u8> {
    let mut key = seen.agent_id.as_bytes().to_vec();
    key.push(b'/');
    key.extend(postcard::to_allocvec(&seen.kind).unwrap_or_default());
    key.extend(seen.stamp_us.to_be_bytes());
    key
}

impl AnchorStore {
    /// Opens (or creates, 0600) the database at `path` with every table.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        private_file(path).map_err(|source| StorageError::Io { path: path.to_owned(), source })?;
        let db = redb::Builder::new().set_cache_size(ANCHOR_CACHE_BYTES).create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StorageError::AlreadyOpen(path.to_owned()),
            other => StorageError::from(other),
        })?;
        let txn = db.begin_write()?;
        txn.open_table(REGISTRATIONS)?;
        txn.open_table(ENTRIES)?;
        txn.open_table(POLLS)?;
        txn.commit()?;
        Ok(Self { db, path: path.to_owned() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything stored. A record that does not decode (a newer format) is skipped with a warning.
    pub fn load(&self) -> Result<AnchorRecords, StorageError> {
        let txn = self.db.begin_read()?;
        let mut records = AnchorRecords::default();
        for row in txn.open_table(REGISTRATIONS)?.iter()? {
            let (_, v) = row?;
            push_decoded::<Registration>(&mut records.registrations, v.value());
        }
        for row in txn.open_table(ENTRIES)?.iter()? {
            let (_, v) = row?;
            push_decoded::<Entry>(&mut records.entries, v.value());
        }
        for row in txn.open_table(POLLS)?.iter()? {
            let (_, v) = row?;
            push_decoded::<PollSeen>(&mut records.polls, v.value());
        }
        Ok(records)
    }

    /// Applies `writes` in one transaction; returns once it is durable.
    pub fn apply(&self, writes: &[AnchorWrite]) -> Result<(), StorageError> {
        if writes.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut regs = txn.open_table(REGISTRATIONS)?;
            let mut entries = txn.open_table(ENTRIES)?;
            let mut polls = txn.open_table(POLLS)?;
            for write in writes {
                match write {
                    AnchorWrite::PutRegistration(reg) => {
                        regs.insert(reg.agent_id.as_str(), encode(reg).as_slice())?;
                    }
                    AnchorWrite::DeleteRegistration(id) => {
                        regs.remove(id.as_str())?;
                    }
                    AnchorWrite::PutEntry(entry) => {
                        entries.insert(entry.seq, encode(entry).as_slice())?;
                    }
                    AnchorWrite::DeleteEntry(seq) => {
                        entries.remove(*seq)?;
                    }
                    AnchorWrite::PutPoll(seen) => {
                        polls.insert(poll_key(seen).as_slice(), encode(seen).as_slice())?;
                    }
                    AnchorWrite::DeletePoll(seen) => {
                        polls.remove(poll_key(seen).as_slice())?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

fn push_decoded<T: DeserializeOwned>(out: &mut Vec<T>, bytes: &[u8]) {
    match decode(bytes) {
        Some(record) => out.push(record),
        None => eprintln!("darkmatter anchor: skipped a stored record this build cannot read"),
    }
}
