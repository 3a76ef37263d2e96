//! The metadata log as Raft sees it (`LogStore`, the `raft::Storage` of the quorum node) and
//! where it is kept (`Disk`). The Raft node reads entries from `LogStore`, which lives in
//! memory; every change is written through a `Disk` and synced before the node goes on
//! (messages that depend on it are sent only after the sync). `FileDisk` keeps a small
//! append-only file of CRC-framed records (entries and hard states) and a snapshot file;
//! `MemDisk` keeps the same in memory for the simulator, losing what was not synced at a crash.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// What a disk holds after a restart.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub snapshot: Snapshot,
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
}

/// Durable storage of the metadata log. `append` may overwrite a suffix (entries from
/// `entries[0].index` on replace what was there). Nothing is durable before `sync`.
pub trait Disk {
    fn load(&mut self) -> std::io::Result<Stored>;
    fn append(&mut self, entries: &[Entry]) -> std::io::Result<()>;
    fn set_hard_state(&mut self, state: &HardState) -> std::io::Result<()>;
    fn sync(&mut self) -> std::io::Result<()>;
    /// Replaces everything with `snapshot` plus the entries after it and `hard_state`,
    /// durably (a crash leaves either the old or the new contents).
    fn compact(
        &mut self,
        snapshot: &Snapshot,
        entries: &[Entry],
        hard_state: &HardState,
    ) -> std::io::Result<()>;
}

/// The in-memory Raft log: snapshot, entries after it, hard and conf state.
#[derive(Debug, Default)]
struct Core {
    snapshot: Snapshot,
    entries: Vec<Entry>,
    hard_state: HardState,
    conf_state: ConfState,
}

impl Core {
    fn first_index(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot.get_metadata().index, |e| e.index)
    }
}

/// `raft::Storage` over memory; shared (`Rc`) between the Raft node and its owner.
#[derive(Debug, Clone, Default)]
pub struct LogStore {
    core: Rc<RefCell<Core>>,
}

impl LogStore {
    /// The store for what `stored` holds, with `voters` as the configuration when nothing
    /// was stored yet.
    pub fn new(stored: Stored, voters: &[u64]) -> LogStore {
        let mut core = Core {
            conf_state: ConfState::default(),
            ..Core::default()
        };
        core.snapshot = stored.snapshot;
        core.conf_state = core.snapshot.get_metadata().get_conf_state().clone();
        if core.conf_state.voters.is_empty() {
            core.conf_state.voters = voters.to_vec();
            core.snapshot
                .mut_metadata()
                .set_conf_state(core.conf_state.clone());
        }
        let snapshot_index = core.snapshot.get_metadata().index;
        // Only a contiguous run right after the snapshot is a log; anything after a gap (a
        // damaged file) is not trusted, and Raft fetches it again from the leader.
        let after_snapshot = stored
            .entries
            .into_iter()
            .filter(|e| e.index > snapshot_index);
        for (expected, entry) in (snapshot_index + 1..).zip(after_snapshot) {
            if entry.index != expected {
                tracing::warn!(
                    expected,
                    found = entry.index,
                    "metadata log has a gap; the entries after it are dropped"
                );
                break;
            }
            core.entries.push(entry);
        }
        core.hard_state = stored.hard_state;
        let last = core.last_index();
        if core.hard_state.commit > last {
            // The log lost entries it had synced (a damaged disk): Raft would refuse to start.
            // Serve from what is left; the quorum sends the rest again.
            tracing::error!(
                commit = core.hard_state.commit,
                last,
                "metadata log ends before its commit index; some entries were lost"
            );
            core.hard_state.commit = last;
        }
        if core.hard_state.commit < snapshot_index {
            core.hard_state.commit = snapshot_index;
        }
        if core.hard_state.term < core.snapshot.get_metadata().term {
            core.hard_state.term = core.snapshot.get_metadata().term;
        }
        LogStore {
            core: Rc::new(RefCell::new(core)),
        }
    }

    pub fn append(&self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let mut core = self.core.borrow_mut();
        let keep = first.index.saturating_sub(core.first_index()) as usize;
        core.entries.truncate(keep);
        core.entries.extend_from_slice(entries);
    }

    pub fn set_hard_state(&self, state: HardState) {
        self.core.borrow_mut().hard_state = state;
    }

    pub fn set_commit(&self, commit: u64) {
        self.core.borrow_mut().hard_state.commit = commit;
    }

    pub fn hard_state(&self) -> HardState {
        self.core.borrow().hard_state.clone()
    }

    /// Installs a snapshot received from the leader: everything before it is gone.
    pub fn apply_snapshot(&self, snapshot: Snapshot) {
        let mut core = self.core.borrow_mut();
        let meta = snapshot.get_metadata();
        core.hard_state.commit = core.hard_state.commit.max(meta.index);
        core.hard_state.term = core.hard_state.term.max(meta.term);
        core.conf_state = meta.get_conf_state().clone();
        let index = meta.index;
        core.entries.retain(|e| e.index > index);
        if core.entries.first().is_some_and(|e| e.index != index + 1) {
            core.entries.clear();
        }
        core.snapshot = snapshot;
    }

    /// Replaces the snapshot with one at `index` (applied) holding `data`, dropping the entries
    /// it covers. Returns the new snapshot and the entries kept.
    pub fn compact(&self, index: u64, data: Vec<u8>) -> Option<(Snapshot, Vec<Entry>)> {
        let mut core = self.core.borrow_mut();
        if index < core.first_index() || index > core.last_index() {
            return None;
        }
        let term = core
            .entries
            .iter()
            .find(|e| e.index == index)
            .map(|e| e.term)?;
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(core.conf_state.clone());
        core.entries.retain(|e| e.index > index);
        core.snapshot = snapshot.clone();
        Some((snapshot, core.entries.clone()))
    }

    pub fn snapshot_index(&self) -> u64 {
        self.core.borrow().snapshot.get_metadata().index
    }

    pub fn snapshot_data(&self) -> Vec<u8> {
        self.core.borrow().snapshot.get_data().to_vec()
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.core.borrow();
        Ok(RaftState::new(
            core.hard_state.clone(),
            core.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let core = self.core.borrow();
        if low < core.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > core.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = core.first_index();
        let mut entries = core.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        if let Some(max) = max_size.into() {
            let mut size = 0u64;
            let mut keep = 0;
            for entry in &entries {
                size += entry.compute_size() as u64;
                if keep > 0 && size > max {
                    break;
                }
                keep += 1;
            }
            entries.truncate(keep);
        }
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let core = self.core.borrow();
        let meta = core.snapshot.get_metadata();
        if index == meta.index {
            return Ok(meta.term);
        }
        if index < core.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > core.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(core.entries[(index - core.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.core.borrow().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.core.borrow().last_index())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        Ok(self.core.borrow().snapshot.clone())
    }
}

const RECORD_ENTRY: u8 = 1;
const RECORD_HARD_STATE: u8 = 2;
const LOG_FILE: &str = "metadata.log";
const SNAPSHOT_FILE: &str = "metadata.snapshot";

/// The metadata log on disk: `metadata.log` (records of `[len u32][crc32c u32][kind u8][body]`,
/// bodies protobuf-encoded entries or hard states; a torn or corrupt tail is cut at load) and
/// `metadata.snapshot` (a protobuf snapshot, replaced by write-sync-rename).
pub struct FileDisk {
    dir: PathBuf,
    file: Option<std::fs::File>,
}

impl FileDisk {
    pub fn new(dir: &Path) -> FileDisk {
        FileDisk {
            dir: dir.to_path_buf(),
            file: None,
        }
    }

    fn log(&mut self) -> std::io::Result<&mut std::fs::File> {
        if self.file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(LOG_FILE))?;
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    fn write_record(&mut self, kind: u8, body: &[u8]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(body.len() + 9);
        let mut crc_input = Vec::with_capacity(body.len() + 1);
        crc_input.push(kind);
        crc_input.extend_from_slice(body);
        buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32c::crc32c(&crc_input).to_le_bytes());
        buf.extend_from_slice(&crc_input);
        self.log()?.write_all(&buf)
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Appends `entries` to `log`, replacing what it held from the first new index on (a new
/// leader overwriting a suffix).
fn append_overwriting(log: &mut Vec<Entry>, entries: Vec<Entry>) {
    let Some(first) = entries.first().map(|e| e.index) else {
        return;
    };
    let keep = log
        .iter()
        .position(|e| e.index >= first)
        .unwrap_or(log.len());
    log.truncate(keep);
    log.extend(entries);
}

/// Replays records into `stored`; returns the length of the valid prefix.
fn replay(bytes: &[u8], stored: &mut Stored) -> usize {
    let mut at = 0;
    while bytes.len() - at >= 9 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let Some(end) = (at + 8).checked_add(len + 1).filter(|&e| e <= bytes.len()) else {
            break;
        };
        let payload = &bytes[at + 8..end];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let body = &payload[1..];
        match payload[0] {
            RECORD_ENTRY => {
                let Ok(entry) = Entry::parse_from_bytes(body) else {
                    break;
                };
                append_overwriting(&mut stored.entries, vec![entry]);
            }
            RECORD_HARD_STATE => {
                let Ok(state) = HardState::parse_from_bytes(body) else {
                    break;
                };
                stored.hard_state = state;
            }
            _ => break,
        }
        at = end;
    }
    at
}

impl Disk for FileDisk {
    fn load(&mut self) -> std::io::Result<Stored> {
        let mut stored = Stored::default();
        match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => {
                stored.snapshot = Snapshot::parse_from_bytes(&bytes).map_err(|e| {
                    invalid(format!(
                        "{} is unreadable: {e}",
                        self.dir.join(SNAPSHOT_FILE).display()
                    ))
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let path = self.dir.join(LOG_FILE);
        let mut bytes = Vec::new();
        match std::fs::File::open(&path) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let valid = replay(&bytes, &mut stored);
        if valid < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                valid,
                dropped = bytes.len() - valid,
                "metadata log ends in a torn or corrupt record; cutting it there"
            );
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        Ok(stored)
    }

    fn append(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        for entry in entries {
            let body = entry.write_to_bytes().map_err(|e| invalid(e.to_string()))?;
            self.write_record(RECORD_ENTRY, &body)?;
        }
        Ok(())
    }

    fn set_hard_state(&mut self, state: &HardState) -> std::io::Result<()> {
        let body = state.write_to_bytes().map_err(|e| invalid(e.to_string()))?;
        self.write_record(RECORD_HARD_STATE, &body)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.log()?.sync_data()
    }

    fn compact(
        &mut self,
        snapshot: &Snapshot,
        entries: &[Entry],
        hard_state: &HardState,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = snapshot
            .write_to_bytes()
            .map_err(|e| invalid(e.to_string()))?;
        let tmp = self.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        std::fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        // The snapshot is durable: the log now needs only what comes after it.
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        self.file = Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&tmp)?,
        );
        self.append(entries)?;
        self.set_hard_state(hard_state)?;
        self.sync()?;
        std::fs::rename(&tmp, self.dir.join(LOG_FILE))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

/// The disk of a simulated node: what was synced survives a crash, the rest is lost.
#[derive(Debug, Clone, Default)]
pub struct MemDisk {
    pub durable: Rc<RefCell<Stored>>,
    pending: Vec<Pending>,
}

#[derive(Debug, Clone)]
enum Pending {
    Entries(Vec<Entry>),
    HardState(HardState),
}

impl MemDisk {
    /// A disk over the same durable contents, as after a restart.
    pub fn reopen(&self) -> MemDisk {
        MemDisk {
            durable: self.durable.clone(),
            pending: Vec::new(),
        }
    }
}

impl Disk for MemDisk {
    fn load(&mut self) -> std::io::Result<Stored> {
        Ok(self.durable.borrow().clone())
    }

    fn append(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        self.pending.push(Pending::Entries(entries.to_vec()));
        Ok(())
    }

    fn set_hard_state(&mut self, state: &HardState) -> std::io::Result<()> {
        self.pending.push(Pending::HardState(state.clone()));
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let mut durable = self.durable.borrow_mut();
        for pending in self.pending.drain(..) {
            match pending {
                Pending::Entries(entries) => append_overwriting(&mut durable.entries, entries),
                Pending::HardState(state) => durable.hard_state = state,
            }
        }
        Ok(())
    }

    fn compact(
        &mut self,
        snapshot: &Snapshot,
        entries: &[Entry],
        hard_state: &HardState,
    ) -> std::io::Result<()> {
        self.sync()?;
        *self.durable.borrow_mut() = Stored {
            snapshot: snapshot.clone(),
            hard_state: hard_state.clone(),
            entries: entries.to_vec(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_file_log_keeps_synced_records_overwrites_suffixes_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = FileDisk::new(dir.path());
        disk.append(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")])
            .unwrap();
        let hs = HardState {
            term: 2,
            commit: 1,
            ..Default::default()
        };
        disk.set_hard_state(&hs).unwrap();
        // A new leader overwrites from index 2.
        disk.append(&[entry(2, 2, b"B")]).unwrap();
        disk.sync().unwrap();
        // A torn record at the end.
        let path = dir.path().join(LOG_FILE);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(file);

        let stored = FileDisk::new(dir.path()).load().unwrap();
        let got: Vec<(u64, u64)> = stored.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(got, vec![(1, 1), (2, 2)]);
        assert_eq!((stored.hard_state.term, stored.hard_state.commit), (2, 1));
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(FileDisk::new(dir.path()).load().unwrap().entries.len(), 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);

        // Compaction: snapshot at 1, entry 2 kept.
        let store = LogStore::new(stored, &[1]);
        let (snapshot, kept) = store.compact(1, b"state".to_vec()).unwrap();
        let mut disk = FileDisk::new(dir.path());
        disk.compact(&snapshot, &kept, &store.hard_state()).unwrap();
        let stored = FileDisk::new(dir.path()).load().unwrap();
        assert_eq!(stored.snapshot.get_metadata().index, 1);
        assert_eq!(stored.snapshot.get_data(), b"state");
        assert_eq!(stored.entries.len(), 1);
        assert_eq!(stored.entries[0].get_data(), b"B");
    }

    #[test]
    fn a_mem_disk_loses_what_was_not_synced() {
        let mut disk = MemDisk::default();
        disk.append(&[entry(1, 1, b"a")]).unwrap();
        disk.sync().unwrap();
        disk.append(&[entry(2, 1, b"b")]).unwrap();
        let after_crash = disk.reopen().load().unwrap();
        assert_eq!(after_crash.entries.len(), 1);
    }
}
