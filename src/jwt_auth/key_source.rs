//! Where the verification keys come from: [`KeySource`], and the static
//! set built from the keys given to the builder.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::algorithm::Algorithm;
use super::key::VerificationKey;
use crate::config::ConfigError;

/// The answer of a [`KeySource`] for a token's `kid` and `alg`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeyLookup {
    /// The key to verify the token with. Its algorithm must be the token's
    /// (the layer checks it again).
    Found(Arc<VerificationKey>),
    /// No key has this `kid` (or the token has no `kid` and the source has
    /// no single key for its algorithm). A remote source may be asked to
    /// [`refresh`](KeySource::refresh).
    UnknownKid,
}

/// A future that refreshes a remote key set and answers the lookup again.
pub type KeyRefresh = Pin<Box<dyn Future<Output = KeyLookup> + Send + 'static>>;

/// Where the verification keys come from.
///
/// The layer calls [`find`](Self::find) for every token it has not cached;
/// it must be fast and must not block (look up an in-memory map, e.g. behind
/// an `ArcSwap` or a short `RwLock` read). When it answers
/// [`KeyLookup::UnknownKid`], the layer calls [`refresh`](Self::refresh):
/// a remote source (JWKS) returns a future that refetches the set —
/// single-flight, at most once per cooldown — and looks the key up again; a
/// static source returns `None` (the default) and the token is rejected.
///
/// [`generation`](Self::generation) changes whenever the key set changes, so
/// the verified-token cache never serves a token verified with a key that
/// has since been removed. A source whose keys can change **must** implement
/// it: the default (always 0) says the set never changes.
///
/// The default is [`StaticKeys`], built from the keys given to the builder.
/// Closures `Fn(Option<&str>, Algorithm) -> KeyLookup` implement it too, but
/// only for key sets that never change (see the implementation's notes).
pub trait KeySource: Send + Sync + 'static {
    /// The key for a token with header `kid` and `alg`.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup;

    /// Called after `find` answered [`KeyLookup::UnknownKid`]. Return a
    /// future that refreshes the key set and answers the lookup again, or
    /// `None` (the default) when the set cannot change.
    fn refresh(&self, kid: Option<&str>, alg: Algorithm) -> Option<KeyRefresh> {
        let _ = (kid, alg);
        None
    }

    /// A number that changes whenever the key set changes (default: always
    /// 0, for sets that never change). Cached verifications made under
    /// another generation are not served.
    ///
    /// Keep the default only if `find` always gives the same answer: with a
    /// constant generation, a token verified with a key that is later
    /// removed is still served from the cache until its `exp` (or the
    /// [`cache_ttl`](super::JwtAuthLayerBuilder::cache_ttl)). A source that
    /// swaps its keys must publish the new set first and then change the
    /// generation (e.g. `fetch_add(1, Release)` after the swap, read with
    /// `Acquire`): the layer reads the generation before it looks a key up,
    /// so a token is never cached under a generation newer than the key set
    /// it was verified with.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::{Arc, RwLock};
    /// use tower_edge::jwt_auth::{Algorithm, KeyLookup, KeySource, VerificationKey};
    ///
    /// #[derive(Default)]
    /// struct RotatingKeys {
    ///     by_kid: RwLock<HashMap<String, Arc<VerificationKey>>>,
    ///     generation: AtomicU64,
    /// }
    ///
    /// impl RotatingKeys {
    ///     fn replace(&self, keys: HashMap<String, Arc<VerificationKey>>) {
    ///         *self.by_kid.write().unwrap() = keys;
    ///         // After the swap: cached tokens of the old set are dropped.
    ///         self.generation.fetch_add(1, Ordering::Release);
    ///     }
    /// }
    ///
    /// impl KeySource for RotatingKeys {
    ///     fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup {
    ///         match kid.and_then(|kid| self.by_kid.read().unwrap().get(kid).cloned()) {
    ///             Some(key) if key.algorithm() == alg => KeyLookup::Found(key),
    ///             _ => KeyLookup::UnknownKid,
    ///         }
    ///     }
    ///     fn generation(&self) -> u64 {
    ///         self.generation.load(Ordering::Acquire)
    ///     }
    /// }
    /// # let keys = RotatingKeys::default();
    /// # keys.replace(HashMap::new());
    /// # assert_eq!(keys.generation(), 1);
    /// ```
    fn generation(&self) -> u64 {
        0
    }
}

/// A closure is a [`KeySource`] for a key set that never changes: its
/// [`generation`](KeySource::generation) is always 0.
///
/// If the closure reads keys that can change (a shared map, a reloaded
/// file), a token verified with a key the closure later drops is still
/// served from the verified-token cache until the token's `exp` (by default
/// there is no TTL). For such keys implement [`KeySource`] on a type with a
/// [`generation`](KeySource::generation) that changes with the set (see its
/// example), or at least bound the damage with
/// [`cache_ttl`](super::JwtAuthLayerBuilder::cache_ttl) or turn the cache off
/// with [`cache(false)`](super::JwtAuthLayerBuilder::cache).
impl<F> KeySource for F
where
    F: Fn(Option<&str>, Algorithm) -> KeyLookup + Send + Sync + 'static,
{
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup {
        self(kid, alg)
    }
}

/// A fixed set of keys: the default [`KeySource`].
///
/// A token with a `kid` is verified with the key of exactly that `kid`
/// (case-sensitive). A token without a `kid` is verified with the key
/// without a `kid` for its algorithm, or, when the set holds exactly one key
/// for its algorithm, with that key.
#[derive(Debug, Clone, Default)]
pub struct StaticKeys {
    by_kid: HashMap<Arc<str>, Arc<VerificationKey>>,
    without_kid: Vec<Arc<VerificationKey>>,
    all: Vec<Arc<VerificationKey>>,
}

impl StaticKeys {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key.
    ///
    /// # Errors
    ///
    /// Two keys with the same `kid`, or two keys without a `kid` for the
    /// same algorithm.
    pub fn insert(&mut self, key: VerificationKey) -> Result<(), ConfigError> {
        let key = Arc::new(key);
        match &key.kid {
            Some(kid) => {
                if self
                    .by_kid
                    .insert(Arc::clone(kid), Arc::clone(&key))
                    .is_some()
                {
                    return Err(ConfigError::new(
                        "key",
                        format!("two keys have the kid `{kid}`"),
                    ));
                }
            }
            None => {
                if self.without_kid.iter().any(|k| k.alg == key.alg) {
                    return Err(ConfigError::new(
                        "key",
                        format!(
                            "two {} keys without a kid: give them distinct kids",
                            key.alg
                        ),
                    ));
                }
                self.without_kid.push(Arc::clone(&key));
            }
        }
        self.all.push(key);
        Ok(())
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The algorithms of the keys.
    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.all.iter().map(|k| k.alg)
    }
}

impl KeySource for StaticKeys {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup {
        let found = match kid {
            Some(kid) => self.by_kid.get(kid),
            None => self.without_kid.iter().find(|k| k.alg == alg).or_else(|| {
                let mut same_alg = self.all.iter().filter(|k| k.alg == alg);
                match (same_alg.next(), same_alg.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }),
        };
        match found {
            Some(key) => KeyLookup::Found(Arc::clone(key)),
            None => KeyLookup::UnknownKid,
        }
    }
}
