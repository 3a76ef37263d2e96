//! Incremental fetch sessions (KIP-227), with the semantics of Kafka's `FetchSession` and
//! `FetchSessionCache`.
//!
//! Owns, for each session a client opened on this shard, the partitions it fetches (their
//! fetch offset, byte limit and leader epoch, updated by each request) and what the last
//! response told the client about each (high watermark, last stable offset, log start
//! offset), so that an incremental request carries only what changed and its response only
//! the partitions with something new. The cache belongs to the shard whose connection
//! received the request: it is never shared or locked, and a session id names nothing on
//! another shard (ids are unique per shard and carry the shard's number, see `new_id`).
//!
//! Pure: no I/O, no clock of its own (`now_ms` is passed in, any monotonic milliseconds), no
//! knowledge of logs. `api::fetch` asks for a `Context` before reading, reads what it says,
//! and hands the outcome back (`create`, `incremental_response`).

use std::collections::{BTreeSet, HashMap, HashSet};

use indexmap::IndexMap;

use crate::protocol::error_code as code;

/// Session id 0: no session.
pub const INVALID_SESSION_ID: i32 = 0;
/// Epoch 0 in a full request: open a new session.
pub const INITIAL_EPOCH: i32 = 0;
/// Epoch -1: a full request that opens no session (and closes the one named).
pub const FINAL_EPOCH: i32 = -1;

/// Kafka's `FetchMetadata.nextEpoch`: epochs count up from 1, wrap to 1 after `i32::MAX`, and
/// a negative epoch stays final.
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// How a request names a topic: by name before Fetch v13, by id from v13 on. A session keeps
/// the form it was opened with (`FETCH_SESSION_TOPIC_ID_ERROR` if a request changes it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicRef {
    Name(String),
    Id([u8; 16]),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic: TopicRef,
    pub partition: i32,
}

/// What a request asks of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchParams {
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
}

/// What a response says about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOutcome {
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub has_records: bool,
}

/// Kafka's `CachedPartition`: the request parameters and what the client was last told.
#[derive(Debug, Clone)]
struct CachedPartition {
    params: FetchParams,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

impl CachedPartition {
    /// A partition the client has not been told anything about yet.
    fn new(params: FetchParams) -> Self {
        CachedPartition {
            params,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
        }
    }

    fn answered(params: FetchParams, outcome: &PartitionOutcome) -> Self {
        let mut cached = CachedPartition::new(params);
        cached.must_respond(outcome);
        cached
    }

    /// Kafka's `maybeUpdateResponseData`: whether an incremental response must carry this
    /// partition (new records, a moved offset, an error), remembering what it tells. An error
    /// resets the high watermark, so the partition is sent again once the error is gone.
    fn must_respond(&mut self, outcome: &PartitionOutcome) -> bool {
        let mut respond = outcome.has_records;
        if self.high_watermark != outcome.high_watermark {
            respond = true;
            self.high_watermark = outcome.high_watermark;
        }
        if self.last_stable_offset != outcome.last_stable_offset {
            respond = true;
            self.last_stable_offset = outcome.last_stable_offset;
        }
        if self.log_start_offset != outcome.log_start_offset {
            respond = true;
            self.log_start_offset = outcome.log_start_offset;
        }
        if outcome.error_code != code::NONE {
            self.high_watermark = -1;
            respond = true;
        }
        respond
    }
}

/// Kafka's `EvictableKey`: unprivileged before privileged, then smaller before larger, then
/// by id; the first one is the least valuable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct EvictableKey {
    privileged: bool,
    size: usize,
    id: i32,
}

#[derive(Debug)]
struct FetchSession {
    id: i32,
    /// The epoch the next incremental request must carry.
    epoch: i32,
    /// Opened by a follower (a replica fetch): may evict clients' sessions.
    privileged: bool,
    uses_topic_ids: bool,
    created_ms: u64,
    last_used_ms: u64,
    /// In response order; partitions that returned records move to the end, so every
    /// partition gets its turn at the front of the response byte budget.
    partitions: IndexMap<PartitionKey, CachedPartition>,
    /// The size the eviction keys were made with at the last touch (Kafka's `cachedSize`).
    indexed_size: Option<usize>,
}

impl FetchSession {
    fn evictable_key(&self, size: usize) -> EvictableKey {
        EvictableKey {
            privileged: self.privileged,
            size,
            id: self.id,
        }
    }

    /// Kafka's `FetchSession.update`: adds or updates the request's partitions, then removes
    /// the forgotten ones.
    fn update(&mut self, partitions: &[(PartitionKey, FetchParams)], forgotten: &[PartitionKey]) {
        for (key, params) in partitions {
            match self.partitions.get_mut(key) {
                Some(cached) => cached.params = *params,
                None => {
                    self.partitions
                        .insert(key.clone(), CachedPartition::new(*params));
                }
            }
        }
        if !forgotten.is_empty() {
            let forgotten: HashSet<&PartitionKey> = forgotten.iter().collect();
            self.partitions.retain(|key, _| !forgotten.contains(key));
        }
    }
}

/// One request's session fields, decoded.
#[derive(Debug, Clone, Copy)]
pub struct SessionRequest<'a> {
    pub session_id: i32,
    pub epoch: i32,
    /// From a follower (`replica_id >= 0`).
    pub privileged: bool,
    pub uses_topic_ids: bool,
    pub partitions: &'a [(PartitionKey, FetchParams)],
    pub forgotten: &'a [PartitionKey],
}

/// How a fetch request is served (Kafka's `FetchContext` kinds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// The request's partitions, answered with session id 0.
    Sessionless,
    /// The request's partitions, all answered; a session holding them is opened with the
    /// answer (`FetchSessionCache::create`), if there is room.
    Full,
    /// The session's partitions, in its order; the answer carries only those with changes
    /// (`FetchSessionCache::incremental_response`).
    Incremental {
        session_id: i32,
        /// The session's epoch once this request is in; a response finding another has
        /// raced with a later request of the same session.
        epoch: i32,
        partitions: Vec<(PartitionKey, FetchParams)>,
    },
    /// Answered with this top-level error and no partitions.
    Error(i16),
}

/// Kafka's `FetchSessionCache`, for one shard.
#[derive(Debug)]
pub struct FetchSessionCache {
    sessions_max: usize,
    /// Sessions idle this long may be evicted by anyone, and sessions older than this (since
    /// creation) may be evicted by a more valuable new one.
    eviction_ms: u64,
    sessions: HashMap<i32, FetchSession>,
    /// (last used, id): the first is the least recently used.
    last_used: BTreeSet<(u64, i32)>,
    evictable_by_all: BTreeSet<EvictableKey>,
    evictable_by_privileged: BTreeSet<EvictableKey>,
    shard: u32,
    shards: u32,
    rng: u64,
    /// Sessions removed to make room for others, since the start.
    pub evictions: u64,
}

impl FetchSessionCache {
    /// A cache of at most `sessions_max` sessions for shard `shard` of `shards`; `seed` drives
    /// the session ids.
    pub fn new(sessions_max: usize, eviction_ms: u64, shard: u32, shards: u32, seed: u64) -> Self {
        assert!(shard < shards.max(1), "shard {shard} of {shards}");
        FetchSessionCache {
            sessions_max,
            eviction_ms,
            sessions: HashMap::new(),
            last_used: BTreeSet::new(),
            evictable_by_all: BTreeSet::new(),
            evictable_by_privileged: BTreeSet::new(),
            shard,
            shards: shards.max(1),
            rng: seed | 1,
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn contains(&self, session_id: i32) -> bool {
        self.sessions.contains_key(&session_id)
    }

    /// The epoch the session's next incremental request must carry.
    pub fn epoch(&self, session_id: i32) -> Option<i32> {
        self.sessions.get(&session_id).map(|s| s.epoch)
    }

    /// The session's partitions, in its current order.
    pub fn partitions(&self, session_id: i32) -> Vec<PartitionKey> {
        self.sessions
            .get(&session_id)
            .map(|s| s.partitions.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Kafka's `FetchManager.newContext`: what serving `request` means, with the session
    /// changes an incremental request makes (partitions added, updated, forgotten; the epoch
    /// moved on).
    pub fn new_context(&mut self, request: SessionRequest<'_>, now_ms: u64) -> Context {
        if request.epoch == INITIAL_EPOCH || request.epoch == FINAL_EPOCH {
            // A full request closes the session it names.
            if request.session_id != INVALID_SESSION_ID {
                self.remove(request.session_id);
            }
            return if request.epoch == FINAL_EPOCH {
                Context::Sessionless
            } else {
                Context::Full
            };
        }
        let Some(session) = self.sessions.get_mut(&request.session_id) else {
            return Context::Error(code::FETCH_SESSION_ID_NOT_FOUND);
        };
        if session.epoch != request.epoch {
            return Context::Error(code::INVALID_FETCH_SESSION_EPOCH);
        }
        if session.uses_topic_ids != request.uses_topic_ids {
            return Context::Error(code::FETCH_SESSION_TOPIC_ID_ERROR);
        }
        session.update(request.partitions, request.forgotten);
        if session.partitions.is_empty() {
            self.remove(request.session_id);
            return Context::Sessionless;
        }
        session.epoch = next_epoch(session.epoch);
        let epoch = session.epoch;
        let partitions = session
            .partitions
            .iter()
            .map(|(key, cached)| (key.clone(), cached.params))
            .collect();
        self.touch(request.session_id, now_ms);
        Context::Incremental {
            session_id: request.session_id,
            epoch,
            partitions,
        }
    }

    /// Kafka's `maybeCreateSession`, once a full request is answered: a session holding its
    /// partitions (in request order) with what the response told about each. Returns its id,
    /// or `INVALID_SESSION_ID` when the cache is full and nothing may be evicted.
    pub fn create(
        &mut self,
        now_ms: u64,
        privileged: bool,
        uses_topic_ids: bool,
        answered: Vec<(PartitionKey, FetchParams, PartitionOutcome)>,
    ) -> i32 {
        let size = answered.len();
        let proposed = EvictableKey {
            privileged,
            size,
            id: 0,
        };
        if self.sessions.len() >= self.sessions_max && !self.try_evict(proposed, now_ms) {
            return INVALID_SESSION_ID;
        }
        let id = self.new_id();
        let mut partitions = IndexMap::with_capacity(size);
        for (key, params, outcome) in answered {
            partitions.insert(key, CachedPartition::answered(params, &outcome));
        }
        self.sessions.insert(
            id,
            FetchSession {
                id,
                epoch: next_epoch(INITIAL_EPOCH),
                privileged,
                uses_topic_ids,
                created_ms: now_ms,
                last_used_ms: now_ms,
                partitions,
                indexed_size: None,
            },
        );
        self.last_used.insert((now_ms, id));
        self.touch(id, now_ms);
        id
    }

    /// Kafka's `IncrementalFetchContext.updateAndGenerateResponseData`: which of the read
    /// partitions the response carries (one flag per entry of `outcomes`), remembering what
    /// it tells, and moving the partitions that returned records to the end of the session's
    /// order. An error if the session is gone or another request moved its epoch meanwhile.
    pub fn incremental_response(
        &mut self,
        session_id: i32,
        epoch: i32,
        outcomes: &[(PartitionKey, PartitionOutcome)],
    ) -> Result<Vec<bool>, i16> {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return Err(code::FETCH_SESSION_ID_NOT_FOUND);
        };
        if session.epoch != epoch {
            return Err(code::INVALID_FETCH_SESSION_EPOCH);
        }
        let mut include = Vec::with_capacity(outcomes.len());
        let mut with_records = HashSet::new();
        for (key, outcome) in outcomes {
            let respond = match session.partitions.get_mut(key) {
                Some(cached) => cached.must_respond(outcome),
                None => false,
            };
            if respond && outcome.has_records {
                with_records.insert(key);
            }
            include.push(respond);
        }
        if !with_records.is_empty() {
            // Stable: the rest keep their order, then the ones that returned records, in
            // theirs (what moving each to the end in turn gives).
            let order = std::mem::take(&mut session.partitions);
            let (moved, stayed): (IndexMap<_, _>, IndexMap<_, _>) = order
                .into_iter()
                .partition(|(key, _)| with_records.contains(key));
            session.partitions = stayed;
            session.partitions.extend(moved);
        }
        Ok(include)
    }

    /// Removes a session; true if there was one.
    pub fn remove(&mut self, session_id: i32) -> bool {
        let Some(session) = self.sessions.remove(&session_id) else {
            return false;
        };
        self.last_used.remove(&(session.last_used_ms, session_id));
        if let Some(size) = session.indexed_size {
            let key = session.evictable_key(size);
            self.evictable_by_all.remove(&key);
            self.evictable_by_privileged.remove(&key);
        }
        true
    }

    /// Kafka's `touch`: marks the session used now and re-files it for eviction under its
    /// current size. A session becomes evictable by a more valuable one only when it is
    /// touched after `eviction_ms` from its creation (a privileged one evicts clients' sooner).
    fn touch(&mut self, session_id: i32, now_ms: u64) {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        self.last_used.remove(&(session.last_used_ms, session_id));
        session.last_used_ms = now_ms;
        self.last_used.insert((now_ms, session_id));
        if let Some(size) = session.indexed_size {
            let old = session.evictable_key(size);
            self.evictable_by_all.remove(&old);
            self.evictable_by_privileged.remove(&old);
        }
        let size = session.partitions.len();
        session.indexed_size = Some(size);
        let key = session.evictable_key(size);
        let old_enough = now_ms.saturating_sub(session.created_ms) > self.eviction_ms;
        if !session.privileged || old_enough {
            self.evictable_by_privileged.insert(key);
        }
        if old_enough {
            self.evictable_by_all.insert(key);
        }
    }

    /// Kafka's `tryEvict`: the least recently used session if it has been idle longer than
    /// `eviction_ms`, else the least valuable evictable one if `proposed` is worth more.
    fn try_evict(&mut self, proposed: EvictableKey, now_ms: u64) -> bool {
        let Some(&(last_used_ms, id)) = self.last_used.first() else {
            return false;
        };
        if now_ms.saturating_sub(last_used_ms) > self.eviction_ms {
            self.remove(id);
            self.evictions += 1;
            return true;
        }
        let candidates = if proposed.privileged {
            &self.evictable_by_privileged
        } else {
            &self.evictable_by_all
        };
        let Some(&first) = candidates.first() else {
            return false;
        };
        if proposed < first {
            return false;
        }
        self.remove(first.id);
        self.evictions += 1;
        true
    }

    /// A positive id not in use, congruent to the shard's number modulo the shard count.
    fn new_id(&mut self) -> i32 {
        let shards = i64::from(self.shards);
        loop {
            // xorshift64: ids need to be hard to guess by accident, not secure.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let raw = (self.rng >> 33) as i64; // 31 bits
            let id = raw - raw % shards + i64::from(self.shard);
            if id <= 0 || id > i64::from(i32::MAX) {
                continue;
            }
            let id = id as i32;
            if !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVICTION_MS: u64 = 1_000;

    fn key(partition: i32) -> PartitionKey {
        PartitionKey {
            topic: TopicRef::Name("t".into()),
            partition,
        }
    }

    fn params(offset: i64) -> FetchParams {
        FetchParams {
            fetch_offset: offset,
            max_bytes: 1 << 20,
            current_leader_epoch: -1,
        }
    }

    fn outcome(high_watermark: i64, has_records: bool) -> PartitionOutcome {
        PartitionOutcome {
            error_code: code::NONE,
            high_watermark,
            last_stable_offset: high_watermark,
            log_start_offset: 0,
            has_records,
        }
    }

    fn request<'a>(
        session_id: i32,
        epoch: i32,
        partitions: &'a [(PartitionKey, FetchParams)],
        forgotten: &'a [PartitionKey],
    ) -> SessionRequest<'a> {
        SessionRequest {
            session_id,
            epoch,
            privileged: false,
            uses_topic_ids: false,
            partitions,
            forgotten,
        }
    }

    /// Opens a session of `size` partitions (all at high watermark 10) at `now_ms`.
    fn open(cache: &mut FetchSessionCache, size: i32, privileged: bool, now_ms: u64) -> i32 {
        let answered = (0..size)
            .map(|p| (key(p), params(0), outcome(10, false)))
            .collect();
        cache.create(now_ms, privileged, false, answered)
    }

    fn incremental(
        cache: &mut FetchSessionCache,
        id: i32,
        now_ms: u64,
    ) -> Vec<(PartitionKey, FetchParams)> {
        let epoch = cache.epoch(id).expect("session");
        match cache.new_context(request(id, epoch, &[], &[]), now_ms) {
            Context::Incremental { partitions, .. } => partitions,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn epochs_count_from_one_and_wrap_as_kafkas() {
        assert_eq!(next_epoch(INITIAL_EPOCH), 1);
        assert_eq!(next_epoch(41), 42);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(FINAL_EPOCH), FINAL_EPOCH);
        assert_eq!(next_epoch(-7), FINAL_EPOCH);
    }

    #[test]
    fn full_requests_open_and_close_sessions() {
        let mut cache = FetchSessionCache::new(10, EVICTION_MS, 0, 1, 7);
        let partitions = [(key(0), params(0))];
        assert_eq!(
            cache.new_context(request(0, INITIAL_EPOCH, &partitions, &[]), 0),
            Context::Full
        );
        let id = open(&mut cache, 1, false, 0);
        assert_ne!(id, INVALID_SESSION_ID);
        assert_eq!(cache.epoch(id), Some(1));
        // Epoch -1 with the id: closed, served without a session.
        assert_eq!(
            cache.new_context(request(id, FINAL_EPOCH, &partitions, &[]), 1),
            Context::Sessionless
        );
        assert!(!cache.contains(id));
        // Epoch 0 with an id: the old one is closed and a new full fetch begins.
        let id = open(&mut cache, 1, false, 2);
        assert_eq!(
            cache.new_context(request(id, INITIAL_EPOCH, &partitions, &[]), 3),
            Context::Full
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn incremental_requests_check_id_and_epoch() {
        let mut cache = FetchSessionCache::new(10, EVICTION_MS, 0, 1, 7);
        let id = open(&mut cache, 2, false, 0);
        assert_eq!(
            cache.new_context(request(id + 1, 1, &[], &[]), 1),
            Context::Error(code::FETCH_SESSION_ID_NOT_FOUND)
        );
        assert_eq!(
            cache.new_context(request(id, 2, &[], &[]), 1),
            Context::Error(code::INVALID_FETCH_SESSION_EPOCH)
        );
        // A refused request changes nothing.
        assert_eq!(cache.epoch(id), Some(1));
        match cache.new_context(request(id, 1, &[], &[]), 1) {
            Context::Incremental {
                session_id, epoch, ..
            } => assert_eq!((session_id, epoch), (id, 2)),
            other => panic!("{other:?}"),
        }
        // The same epoch again is a stale request.
        assert_eq!(
            cache.new_context(request(id, 1, &[], &[]), 2),
            Context::Error(code::INVALID_FETCH_SESSION_EPOCH)
        );
        let mut with_ids = request(id, 2, &[], &[]);
        with_ids.uses_topic_ids = true;
        assert_eq!(
            cache.new_context(with_ids, 2),
            Context::Error(code::FETCH_SESSION_TOPIC_ID_ERROR)
        );
    }

    #[test]
    fn the_epoch_wraps_after_i32_max() {
        let mut cache = FetchSessionCache::new(10, EVICTION_MS, 0, 1, 7);
        let id = open(&mut cache, 1, false, 0);
        cache.sessions.get_mut(&id).unwrap().epoch = i32::MAX;
        incremental(&mut cache, id, 1);
        assert_eq!(cache.epoch(id), Some(1));
    }

    #[test]
    fn requests_add_update_and_forget_partitions() {
        let mut cache = FetchSessionCache::new(10, EVICTION_MS, 0, 1, 7);
        let id = open(&mut cache, 2, false, 0);
        let changes = [(key(1), params(5)), (key(2), params(0))];
        let context = cache.new_context(request(id, 1, &changes, &[key(0)]), 1);
        let Context::Incremental { partitions, .. } = context else {
            panic!("{context:?}");
        };
        assert_eq!(
            partitions,
            vec![(key(1), params(5)), (key(2), params(0))],
            "updated in place, added at the end, forgotten removed"
        );
        // Forgetting every partition ends the session.
        let context = cache.new_context(request(id, 2, &[], &[key(1), key(2)]), 2);
        assert_eq!(context, Context::Sessionless);
        assert!(!cache.contains(id));
    }

    #[test]
    fn incremental_responses_carry_only_changes() {
        let mut cache = FetchSessionCache::new(10, EVICTION_MS, 0, 1, 7);
        let id = open(&mut cache, 4, false, 0);
        let added = [(key(4), params(0))];
        let Context::Incremental { epoch, .. } = cache.new_context(request(id, 1, &added, &[]), 1)
        else {
            panic!("incremental");
        };
        let mut log_moved = outcome(10, false);
        log_moved.log_start_offset = 3;
        let mut failed = outcome(-1, false);
        failed.error_code = code::NOT_LEADER_OR_FOLLOWER;
        let outcomes = [
            (key(0), outcome(10, false)), // nothing new
            (key(1), outcome(12, false)), // high watermark moved
            (key(2), log_moved),          // log start moved
            (key(3), failed),             // an error
            (key(4), outcome(10, false)), // new to the session: never told
        ];
        let include = cache.incremental_response(id, epoch, &outcomes).unwrap();
        assert_eq!(include, vec![false, true, true, true, true]);
        // Told once, then quiet; the errored one comes back when the error is gone.
        incremental(&mut cache, id, 2);
        let epoch = cache.epoch(id).unwrap();
        let outcomes = [
            (key(0), outcome(10, false)),
            (key(1), outcome(12, false)),
            (key(2), log_moved),
            (key(3), outcome(10, false)),
            (key(4), outcome(10, false)),
        ];
        let include = cache.incremental_response(id, epoch, &outcomes).unwrap();
        assert_eq!(include, vec![false, false, false, true, false]);
    }

    #[test]
    fn partitions_that_returned_records_move_to_the_end() {
        let mut cache = FetchSessionCache::new(10, EVICTION_MS, 0, 1, 7);
        let id = open(&mut cache, 4, false, 0);
        let Context::Incremental { epoch, .. } = cache.new_context(request(id, 1, &[], &[]), 1)
        else {
            panic!("incremental");
        };
        let outcomes: Vec<_> = (0..4)
            .map(|p| (key(p), outcome(10, p == 0 || p == 2)))
            .collect();
        let include = cache.incremental_response(id, epoch, &outcomes).unwrap();
        assert_eq!(include, vec![true, false, true, false]);
        assert_eq!(cache.partitions(id), vec![key(1), key(3), key(0), key(2)]);
    }

    #[test]
    fn a_response_raced_by_a_later_request_is_refused() {
        let mut cache = FetchSessionCache::new(10, EVICTION_MS, 0, 1, 7);
        let id = open(&mut cache, 1, false, 0);
        let Context::Incremental { epoch: first, .. } =
            cache.new_context(request(id, 1, &[], &[]), 1)
        else {
            panic!("incremental");
        };
        incremental(&mut cache, id, 2);
        let outcomes = [(key(0), outcome(10, false))];
        assert_eq!(
            cache.incremental_response(id, first, &outcomes),
            Err(code::INVALID_FETCH_SESSION_EPOCH)
        );
        cache.remove(id);
        assert_eq!(
            cache.incremental_response(id, first + 1, &outcomes),
            Err(code::FETCH_SESSION_ID_NOT_FOUND)
        );
    }

    #[test]
    fn a_full_cache_refuses_new_sessions_while_all_are_young() {
        let mut cache = FetchSessionCache::new(2, EVICTION_MS, 0, 1, 7);
        let a = open(&mut cache, 1, false, 0);
        let b = open(&mut cache, 1, false, 0);
        assert_eq!(open(&mut cache, 100, false, 10), INVALID_SESSION_ID);
        assert!(cache.contains(a) && cache.contains(b));
        assert_eq!(cache.evictions, 0);
        let mut none = FetchSessionCache::new(0, EVICTION_MS, 0, 1, 7);
        assert_eq!(open(&mut none, 1, false, 0), INVALID_SESSION_ID);
    }

    #[test]
    fn the_least_recently_used_session_is_evicted_once_idle_past_the_eviction_time() {
        let mut cache = FetchSessionCache::new(2, EVICTION_MS, 0, 1, 7);
        let a = open(&mut cache, 5, false, 0);
        let b = open(&mut cache, 5, false, 0);
        // `a` keeps fetching, `b` goes quiet.
        incremental(&mut cache, a, 600);
        incremental(&mut cache, a, 1_200);
        let c = open(&mut cache, 1, false, 1_200);
        assert_ne!(c, INVALID_SESSION_ID, "b idle for 1200 ms > 1000 ms");
        assert!(cache.contains(a) && !cache.contains(b) && cache.contains(c));
        assert_eq!(cache.evictions, 1);
    }

    #[test]
    fn an_old_busy_session_gives_way_to_a_larger_one() {
        let mut cache = FetchSessionCache::new(2, EVICTION_MS, 0, 1, 7);
        let small = open(&mut cache, 2, false, 0);
        let large = open(&mut cache, 50, false, 0);
        // Both stay in use; touched after the eviction time they become evictable by size.
        for now in [500, 1_001, 1_500] {
            incremental(&mut cache, small, now);
            incremental(&mut cache, large, now);
        }
        // A session smaller than the smallest is not worth an eviction.
        assert_eq!(open(&mut cache, 1, false, 1_600), INVALID_SESSION_ID);
        // A larger one evicts the smallest.
        let new = open(&mut cache, 10, false, 1_600);
        assert_ne!(new, INVALID_SESSION_ID);
        assert!(!cache.contains(small) && cache.contains(large));
    }

    #[test]
    fn a_privileged_session_may_evict_young_client_sessions() {
        let mut cache = FetchSessionCache::new(1, EVICTION_MS, 0, 1, 7);
        let client = open(&mut cache, 100, false, 0);
        assert_eq!(open(&mut cache, 100, false, 10), INVALID_SESSION_ID);
        let follower = open(&mut cache, 1, true, 10);
        assert_ne!(follower, INVALID_SESSION_ID);
        assert!(!cache.contains(client));
        // A young privileged session is not evicted by anyone's.
        assert_eq!(open(&mut cache, 1_000, true, 20), INVALID_SESSION_ID);
    }

    #[test]
    fn session_ids_are_positive_unique_and_carry_the_shard() {
        let mut cache = FetchSessionCache::new(10_000, EVICTION_MS, 3, 4, 99);
        let mut ids = HashSet::new();
        for _ in 0..5_000 {
            let id = open(&mut cache, 1, false, 0);
            assert!(id > 0);
            assert_eq!(id % 4, 3);
            assert!(ids.insert(id));
        }
    }
}
