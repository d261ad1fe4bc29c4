//! Durable state: the passport file and one redb database per identity.
//!
//! Layout under the state directory (`<cwd>/.darkmatter/` by default):
//! - `passport.key`: 0.5.3's format (64 hex digits of the Ed25519 seed and a newline), mode 0600;
//! - `state-<first 16 hex of the agent id>.redb`: one redb table per [`proto_core::Table`], named by
//!   [`proto_core::Table::name`], key `&str`, value `&[u8]` (postcard records from the core).
//!
//! Each [`proto_core::Output::Persist`] batch is one write transaction committed with redb's default
//! `Durability::Immediate` (fsync) before the driver carries out any later output. redb holds an
//! exclusive file lock while the database is open, which makes one running node per identity.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proto_core::{Change, Passport, Table};
use redb::{Database, ReadableTable, TableDefinition};
use thiserror::Error;

/// redb page cache, in bytes: the state is small (bounded tables of the core), a few MiB suffice.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;
/// File name of the passport inside the state directory, as 0.5.3 names it.
pub const PASSPORT_FILE: &str = "passport.key";
/// Hex digits of the agent id used in the state file name.
pub const STATE_FILE_ID_HEX: usize = 16;
/// Largest passport file read, in bytes (64 hex digits plus whitespace).
pub const PASSPORT_BYTES_MAX: u64 = 1_024;
/// The layout of stored values this build writes: format 1 = a schema version byte, then the record
/// in postcard ([`proto_core::store::Record`]). Format 0 (no `meta` row) had no version byte.
pub const RECORD_FORMAT: u8 = 1;

/// Facts about the database itself, apart from the core's tables.
const META: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("meta");
const META_RECORD_FORMAT: &str = "record_format";

/// Why the state could not be opened, read or written.
#[derive(Debug, Error)]
pub enum StorageError {
    /// Another process (or this one) has the state file open: a node with this identity is running.
    #[error("a node with this identity is already running (state file {0} is locked); attach to it instead")]
    AlreadyOpen(PathBuf),
    /// The state directory or passport file could not be created or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The passport file does not hold a 0.5.3 passport.
    #[error("{path}: {source}")]
    Passport {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: proto_core::IdentityError,
    },
    /// The OS random source failed while creating a passport.
    #[error("cannot read OS randomness: {0}")]
    Random(String),
    /// redb refused to open the database (corrupt file, I/O error).
    #[error("cannot open state database: {0}")]
    Open(Box<redb::DatabaseError>),
    /// redb could not begin a transaction.
    #[error("state transaction failed: {0}")]
    Transaction(Box<redb::TransactionError>),
    /// redb could not open a table.
    #[error("state table failed: {0}")]
    Table(Box<redb::TableError>),
    /// redb failed reading or writing a page.
    #[error("state storage failed: {0}")]
    Storage(Box<redb::StorageError>),
    /// redb could not commit.
    #[error("state commit failed: {0}")]
    Commit(Box<redb::CommitError>),
    /// The state file was written by a newer build in a format this one cannot read.
    #[error(
        "{path} was written by a newer darkmatter (record format {found}, this build knows {known}); upgrade to use it"
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// The format found.
        found: u8,
        /// The newest format this build knows.
        known: u8,
    },
}

macro_rules! boxed_from {
    ($($source:ty => $variant:ident),*) => {$(
        impl From<$source> for StorageError {
            fn from(e: $source) -> Self {
                StorageError::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_from!(redb::DatabaseError => Open, redb::TransactionError => Transaction, redb::TableError => Table, redb::StorageError => Storage, redb::CommitError => Commit);

/// One identity's redb database.
pub struct Storage {
    db: Database,
    path: PathBuf,
    /// Durable commits made by [`Storage::apply`] so far (shared, so a status view or a test can read
    /// it while the core owns the storage).
    commits: Arc<AtomicU64>,
}

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

impl Storage {
    /// The state file of an identity inside `dir`.
    pub fn path_for(dir: &Path, agent_id: &str) -> PathBuf {
        let prefix = &agent_id[..STATE_FILE_ID_HEX.min(agent_id.len())];
        dir.join(format!("state-{prefix}.redb"))
    }

    /// Opens (or creates) the database and makes sure every table exists. The file is made (or
    /// kept) readable by its owner only: it holds the inbox.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        private_file(path).map_err(|source| StorageError::Io { path: path.to_owned(), source })?;
        let db = redb::Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StorageError::AlreadyOpen(path.to_owned()),
            other => StorageError::from(other),
        })?;
        let txn = db.begin_write()?;
        for table in Table::ALL {
            txn.open_table(definition(table))?;
        }
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(META_RECORD_FORMAT)?.map(|v| v.value().first().copied().unwrap_or(0));
            match found {
                Some(f) if f > RECORD_FORMAT => {
                    return Err(StorageError::NewerFormat { path: path.to_owned(), found: f, known: RECORD_FORMAT })
                }
                Some(_) => {}
                None => {
                    // A new file, or one written before values carried a version byte.
                    add_version_bytes(&txn)?;
                    meta.insert(META_RECORD_FORMAT, [RECORD_FORMAT].as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(Self { db, path: path.to_owned(), commits: Arc::default() })
    }

    /// A live count of the commits [`Storage::apply`] has made.
    pub fn commit_counter(&self) -> Arc<AtomicU64> {
        self.commits.clone()
    }

    /// The file this database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record, for [`proto_core::Node::restore`].
    pub fn load(&self) -> Result<Vec<(Table, String, Vec<u8>)>, StorageError> {
        let txn = self.db.begin_read()?;
        let mut records = Vec::new();
        for table in Table::ALL {
            let t = txn.open_table(definition(table))?;
            for row in t.iter()? {
                let (k, v) = row?;
                records.push((table, k.value().to_owned(), v.value().to_vec()));
            }
        }
        Ok(records)
    }

    /// Applies one persist batch (or a group of them, in order) atomically and durably. Each table is
    /// opened once; changes to one table keep their order, and tables are independent.
    pub fn apply(&self, changes: &[Change]) -> Result<(), StorageError> {
        let txn = self.db.begin_write()?;
        for table in Table::ALL {
            let mut mine = changes.iter().filter(|c| c.table == table).peekable();
            if mine.peek().is_none() {
                continue;
            }
            let mut t = txn.open_table(definition(table))?;
            for change in mine {
                match &change.value {
                    Some(bytes) => {
                        t.insert(change.key.as_str(), bytes.as_slice())?;
                    }
                    None => {
                        t.remove(change.key.as_str())?;
                    }
                }
            }
        }
        txn.commit()?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Rewrites every value of a format-0 file as format 1: the values were all written in their
/// record's first layout, so each gets version byte 1 in front. One transaction: all or nothing.
fn add_version_bytes(txn: &redb::WriteTransaction) -> Result<(), StorageError> {
    for table in Table::ALL {
        let mut t = txn.open_table(definition(table))?;
        let rows: Vec<(String, Vec<u8>)> = t
            .iter()?
            .map(|row| row.map(|(k, v)| (k.value().to_owned(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        for (key, value) in rows {
            let mut versioned = Vec::with_capacity(value.len() + 1);
            versioned.push(1);
            versioned.extend_from_slice(&value);
            t.insert(key.as_str(), versioned.as_slice())?;
        }
    }
    Ok(())
}

/// Mode of every state directory: its owner's only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every state file: its owner's only.
pub const FILE_MODE: u32 = 0o600;

/// Creates the state directory (mode 0700) if it does not exist, and takes group and other access
/// away from one that does (an older build, or another program, may have made it 0755).
pub fn ensure_dir(dir: &Path) -> Result<(), StorageError> {
    let io = |source| StorageError::Io { path: dir.to_owned(), source };
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(io)?;
    restrict(dir, DIR_MODE).map_err(io)
}

/// Creates `path` empty with mode 0600 if it does not exist (so no other user can ever read what is
/// written to it later), and takes group and other access away from one that does.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    match fs::OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => restrict(path, FILE_MODE),
        Err(e) => Err(e),
    }
}

/// Sets `mode` on `path` when it grants more than `mode` does (never widens).
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Reads `<dir>/passport.key`, or creates it with a fresh random seed (mode 0600) when missing.
pub fn load_or_create_passport(dir: &Path) -> Result<Passport, StorageError> {
    let path = dir.join(PASSPORT_FILE);
    let io = |source| StorageError::Io { path: path.clone(), source };
    match fs::File::open(&path) {
        Ok(file) => {
            use std::io::Read;
            restrict(&path, FILE_MODE).map_err(io)?;
            let mut text = String::new();
            file.take(PASSPORT_BYTES_MAX).read_to_string(&mut text).map_err(io)?;
            Passport::from_file_contents(&text).map_err(|source| StorageError::Passport { path: path.clone(), source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).map_err(|e| StorageError::Random(e.to_string()))?;
            let passport = Passport::from_seed(seed);
            // create_new: never overwrite a passport another process wrote meanwhile.
            let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
            file.write_all(passport.to_file_contents().as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(passport)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dm-storage-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        ensure_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn loose_state_is_made_private_and_fresh_state_is_born_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = std::env::temp_dir().join(format!("dm-storage-modes-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        // As an older build left it: a 0755 directory with a 0644 database and passport.
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join("state-old.redb");
        drop(Storage::open(&db).unwrap());
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create_passport(&dir).unwrap();
        fs::set_permissions(dir.join(PASSPORT_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        ensure_dir(&dir).unwrap();
        drop(Storage::open(&db).unwrap());
        load_or_create_passport(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&dir.join(PASSPORT_FILE)), 0o600);
        // A tighter mode is never widened; a fresh database is born 0600.
        fs::set_permissions(&db, fs::Permissions::from_mode(0o400)).unwrap();
        private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o400);
        let fresh = dir.join("state-new.redb");
        drop(Storage::open(&fresh).unwrap());
        assert_eq!(mode(&fresh), 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn passport_is_created_once_with_mode_0600_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("passport");
        let a = load_or_create_passport(&dir).unwrap();
        let mode = fs::metadata(dir.join(PASSPORT_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create_passport(&dir).unwrap();
        assert_eq!(a.agent_id(), b.agent_id());
        fs::write(dir.join(PASSPORT_FILE), "garbage").unwrap();
        assert!(matches!(load_or_create_passport(&dir), Err(StorageError::Passport { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_from_before_versioned_records_is_upgraded_in_place() {
        use proto_core::store::{decode, encode};
        let dir = temp_dir("format0");
        let path = dir.join("state-x.redb");
        let expiry_us: i64 = 1_790_000_000_000_000;
        {
            // What a build before record versions wrote: bare postcard, no `meta` table. (A replay
            // row's layout never changed, so today's bytes without their version byte are that.)
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(definition(Table::Replay)).unwrap().insert("msg-1", &encode(&expiry_us)[1..]).unwrap();
            txn.commit().unwrap();
        }
        let s = Storage::open(&path).unwrap();
        let rows = s.load().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(decode::<i64>(&rows[0].2).unwrap(), expiry_us);
        drop(s);
        // Opening again does not add a second version byte.
        let rows = Storage::open(&path).unwrap().load().unwrap();
        assert_eq!(rows[0].2, encode(&expiry_us));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_from_a_newer_format_is_refused_untouched() {
        let dir = temp_dir("newer");
        let path = dir.join("state-x.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert(META_RECORD_FORMAT, [RECORD_FORMAT + 1].as_slice()).unwrap();
            txn.commit().unwrap();
        }
        let err = Storage::open(&path).err().expect("refused");
        assert!(
            matches!(err, StorageError::NewerFormat { found, known, .. } if found == RECORD_FORMAT + 1 && known == RECORD_FORMAT),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn changes_round_trip_and_a_second_open_is_refused() {
        let dir = temp_dir("db");
        let path = dir.join("state-x.redb");
        {
            let s = Storage::open(&path).unwrap();
            s.apply(&[
                Change { table: Table::Inbox, key: "m1".into(), value: Some(vec![1, 2]) },
                Change { table: Table::Inbox, key: "m2".into(), value: Some(vec![3]) },
                Change { table: Table::Replay, key: "m1".into(), value: Some(vec![9]) },
            ])
            .unwrap();
            s.apply(&[Change::delete(Table::Inbox, "m2")]).unwrap();
            assert!(matches!(Storage::open(&path), Err(StorageError::AlreadyOpen(_))));
        }
        let s = Storage::open(&path).unwrap();
        let mut got = s.load().unwrap();
        got.sort();
        assert_eq!(got, vec![(Table::Inbox, "m1".to_owned(), vec![1, 2]), (Table::Replay, "m1".to_owned(), vec![9])]);
        drop(s);
        fs::remove_dir_all(&dir).unwrap();
    }
}
