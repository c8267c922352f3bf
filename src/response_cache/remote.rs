//! The Redis tier, shared by every replica: entries with a TTL, a short
//! fill lease so one replica fills a cold key, and invalidation that every
//! replica's memory tier sees (a pub/sub channel).
//!
//! * Keys: `<prefix>:{rc}:e:<key>` (a hash of the key's variants, with a
//!   TTL of the longest lifetime plus stale windows), `<prefix>:{rc}:l:<key>`
//!   (the fill lease), `<prefix>:{rc}:g:<group>` (the entries of a group,
//!   URIs included). All share the hash tag `{rc}`, so the scripts run on
//!   one Cluster node: a cache of hot responses, not a sharded store.
//! * Time is Redis's (`TIME`): an entry's age is the same on every replica.
//!   A replica estimates Redis's clock from a `TIME` reply at most a second
//!   old (`remote_clock`).
//! * A lookup is one round trip of plain commands: `HGETALL` of the
//!   variants, with `TIME` when the clock's sample is over a second old
//!   (a hit costs Redis about what a `GET` of the entry does, no script).
//!   Only when there are no variants does a script take the lease (`SET
//!   NX PX`, reading the variants again: they may have arrived
//!   meanwhile). The replica that gets the lease fills the key and
//!   releases it when storing; the others poll the key every 25 ms until
//!   the entry arrives or `lock_timeout` passes (then they fill too). The
//!   lease lives 1 s (or `lock_timeout`, if shorter) and its holder
//!   renews it every third of that while the fill runs: when a replica
//!   dies mid-fill, its lease expires within a second and the next
//!   replica polling takes it over and fills, rather than every reader of
//!   the key waiting out `lock_timeout`.
//! * A purge deletes the group's entries in Redis and `PUBLISH`es the
//!   group's name on `<prefix>:rc:purge`; every replica subscribes and
//!   purges its memory tier (and clears it whenever it (re)subscribes:
//!   messages sent meanwhile are lost). Redis Cluster subscriptions are
//!   not supported yet: with a Cluster, memory entries of other replicas
//!   live out their lifetime.
//! * Redis failing: the request bypasses the cache (`fwd=bypass`, nothing
//!   stored), counted in [`CacheStats::redis_bypassed`](super::CacheStats).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::AbortHandle;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use super::codec;
use super::entry::{Entry, KeyParts};
use super::remote_clock::RemoteClock;
use crate::redis::key::tagged_key_from_parts;
use crate::redis::{RedisBackend, RedisFailure, Script};

const LOOKUP: &str = r"
local v = redis.call('HGETALL', KEYS[1])
local lease = 0
if #v == 0 and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  lease = 1
end
local t = redis.call('TIME')
return {lease, t[1] * 1000 + math.floor(t[2] / 1000), v}
";

const STORE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], now .. ':' .. ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
if redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
return now
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// How long a fill lease lives unless its holder renews it (every third
/// of it, while the fill runs): a replica that dies mid-fill holds the
/// others up for at most this, not `lock_timeout`.
const LEASE_TTL: Duration = Duration::from_secs(1);

const PURGE: &str = r"
local members = redis.call('SMEMBERS', KEYS[1])
for _, k in ipairs(members) do redis.call('DEL', k) end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return #members
";

/// What a lookup in Redis found.
pub(crate) enum Found {
    /// Stored variants, each with its age by Redis's clock.
    Variants(Vec<(Bytes, Duration)>),
    /// Nothing; this replica holds the fill lease (its token).
    Lease(u64),
    /// Nothing; another replica fills.
    Filling,
}

/// See the module docs.
pub(crate) struct RemoteTier {
    backend: RedisBackend,
    prefix: Box<str>,
    lookup: Script,
    store: Script,
    purge: Script,
    release: Script,
    renew: Script,
    /// The fill lease's lifetime without renewal: [`LEASE_TTL`], or
    /// `lock_timeout` when shorter.
    lease: Duration,
    pub(crate) bypassed: AtomicU64,
    subscribed: AtomicBool,
    /// Redis's clock, for the age of what a lookup finds.
    clock: RemoteClock,
}

impl std::fmt::Debug for RemoteTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTier")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The message of a purge: `g:<group>` or `u:<path>?<query>`.
pub(crate) fn uri_group_name(path: &str, query: &str) -> String {
    format!("u:{path}?{query}")
}

impl RemoteTier {
    pub(crate) fn new(backend: RedisBackend, prefix: String, lease: Duration) -> Self {
        Self {
            backend,
            prefix: prefix.into_boxed_str(),
            lookup: Script::new(LOOKUP),
            store: Script::new(STORE),
            purge: Script::new(PURGE),
            release: Script::new(RELEASE),
            renew: Script::new(RENEW),
            lease: lease.min(LEASE_TTL),
            bypassed: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            clock: RemoteClock::new(),
        }
    }

    /// The key's name in Redis: a hash of its parts without a seed, the
    /// same on every replica.
    pub(crate) fn id(key: &KeyParts) -> String {
        let mut h = Xxh3::new();
        h.update(key.path.as_bytes());
        h.update(&[0xff]);
        h.update(key.query.as_bytes());
        if let Some(subject) = &key.subject {
            h.update(&[0xfe]);
            h.update(subject.as_bytes());
        }
        crate::hex::string(&h.digest128().to_be_bytes())
    }

    fn key(&self, kind: &str, id: &str) -> String {
        tagged_key_from_parts(&self.prefix, "rc", &[kind, ":", id])
    }

    fn group_key(&self, name: &str) -> String {
        let digits = crate::hex::u64_digits(xxh3_64(name.as_bytes()));
        self.key("g", crate::hex::as_str(&digits))
    }

    fn channel(&self) -> String {
        format!("{}:rc:purge", self.prefix)
    }

    /// The variants of `id`, or the fill lease when there are none.
    pub(crate) async fn lookup(&self, id: &str) -> Result<Found, RedisFailure> {
        let entry_key = self.key("e", id);
        // Sized up front: growing the buffers cost more than the commands.
        let mut hgetall = redis::Cmd::with_capacity(2, 7 + entry_key.len());
        hgetall.arg("HGETALL").arg(&entry_key);
        // Redis's `TIME` rides along only when the clock's sample is over
        // a second old (see `remote_clock`).
        let sent = self.clock.local_ms();
        let (flat, now): (Vec<Vec<u8>>, i64) = match self.clock.fresh_offset_at(sent) {
            Some(offset) => {
                let flat = self.backend.command_map(hgetall, Ok)?.await?;
                (flat, self.clock.local_ms().saturating_add(offset))
            }
            None => {
                let mut time = redis::Cmd::with_capacity(1, 4);
                time.arg("TIME");
                let mut pipe = redis::Pipeline::with_capacity(2);
                pipe.add_command(hgetall).add_command(time);
                let (flat, time): (Vec<Vec<u8>>, (i64, i64)) =
                    self.backend.run_pipeline(pipe).await?;
                let now = time.0 * 1000 + time.1 / 1000;
                self.clock.sample(now, sent);
                (flat, now)
            }
        };
        if !flat.is_empty() {
            return Ok(Found::Variants(variants(flat, now)));
        }
        let token = rand_token();
        let call = self
            .lookup
            .call(&[&entry_key, &self.key("l", id)])
            .arg(token)
            .arg(self.lease.as_millis() as u64);
        let sent = self.clock.local_ms();
        let (lease, now, flat): (i64, i64, Vec<Vec<u8>>) = self.backend.run(call).await?;
        self.clock.sample(now, sent);
        if flat.is_empty() {
            return Ok(if lease == 1 {
                Found::Lease(token)
            } else {
                Found::Filling
            });
        }
        Ok(Found::Variants(variants(flat, now)))
    }

    /// Stores `entry` in the background (releasing the lease `token`).
    pub(crate) fn spawn_store(self: &Arc<Self>, entry: &Entry, token: u64) {
        let id = Self::id(&entry.key);
        let mut variant = Xxh3::new();
        for (name, value) in entry.vary.iter() {
            variant.update(name.as_str().as_bytes());
            variant.update(&[0xff]);
            if let Some(value) = value {
                variant.update(value);
            }
            variant.update(&[0xfe]);
        }
        let v = &entry.verdict;
        let ttl = v.lifetime + v.stale_while_revalidate.max(v.stale_if_error);
        let ttl = ttl
            .saturating_sub(v.initial_age)
            .max(Duration::from_secs(1));
        let mut keys = vec![self.key("e", &id), self.key("l", &id)];
        keys.push(self.group_key(&uri_group_name(&entry.key.path, &entry.key.query)));
        for name in entry.group_names.iter() {
            keys.push(self.group_key(&format!("g:{name}")));
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let call = self
            .store
            .call(&refs)
            .arg(&crate::hex::u64_digits(variant.digest())[..])
            .arg(codec::encode(entry))
            .arg(ttl.as_millis() as u64)
            .arg(token);
        if let Ok(future) = self.backend.eval::<i64>(call)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(future);
        }
    }

    /// Releases the fill lease `token` of `id` in the background (the
    /// fill ended without storing), unless another replica holds it now.
    pub(crate) fn spawn_release(&self, id: &str, token: u64) {
        let call = self.release.call(&[&self.key("l", id)]).arg(token);
        if let Ok(future) = self.backend.eval::<i64>(call)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(future);
        }
    }

    /// Keeps the fill lease `token` of `id` alive while its fill runs:
    /// renews it every third of its lifetime until the returned task is
    /// aborted (the fill ended) or the lease is no longer this replica's.
    pub(crate) fn spawn_renewal(self: &Arc<Self>, id: &str, token: u64) -> Option<AbortHandle> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let remote = Arc::clone(self);
        let key = self.key("l", id);
        let task = runtime.spawn(async move {
            let every = remote.lease / 3;
            loop {
                tokio::time::sleep(every).await;
                let call = remote
                    .renew
                    .call(&[&key])
                    .arg(token)
                    .arg(remote.lease.as_millis() as u64);
                // A failed call is tried again at the next tick; 0: the
                // lease expired and another replica may hold it now.
                if let Ok(0) = remote.backend.run::<i64>(call).await {
                    return;
                }
            }
        });
        Some(task.abort_handle())
    }

    /// Deletes the entries of `group` (`g:<name>` or a URI's
    /// `u:<path>?<query>`) and tells every replica.
    pub(crate) async fn purge(&self, group: &str) -> Result<usize, RedisFailure> {
        let call = self
            .purge
            .call(&[&self.group_key(group)])
            .arg(self.channel())
            .arg(group);
        let n: i64 = self.backend.run(call).await?;
        Ok(n.max(0) as usize)
    }

    /// The backend and channel of the purge subscription, the first time
    /// only (the caller starts it).
    pub(crate) fn claim_subscription(&self) -> Option<(RedisBackend, String)> {
        if self.subscribed.load(Ordering::Relaxed) || self.subscribed.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some((self.backend.clone(), self.channel()))
    }
}

/// A random lease token, never 0 (0 means "no lease" to the store).
fn rand_token() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new()
        .hash_one(std::time::SystemTime::now())
        .max(1)
}

/// The variants of a `HGETALL` reply (field, value, ...), each value
/// `<stored at, ms>:<entry>`, with its age at `now` (ms, Redis `TIME`).
fn variants(flat: Vec<Vec<u8>>, now: i64) -> Vec<(Bytes, Duration)> {
    let mut variants = Vec::new();
    for value in flat.into_iter().skip(1).step_by(2) {
        let Some(at) = value.iter().position(|&b| b == b':') else {
            continue;
        };
        let Some(stored) = std::str::from_utf8(&value[..at])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        let age = Duration::from_millis(now.saturating_sub(stored).max(0) as u64);
        let mut bytes = Bytes::from(value);
        let _ = bytes.split_to(at + 1);
        variants.push((bytes, age));
    }
    variants
}
