//! A fresh hit's response fields, rendered once per second of its entry's
//! age and cloned by every hit in that second.
//!
//! A hit's fields are the stored ones plus `Age` (RFC 9111 §5.1) and its
//! `Cache-Status` member (RFC 9211 §2, whose `ttl` counts down with the
//! age): both change once a second at most. Rendering them cost a hit more
//! than the rest of the lookup (`HeaderValue`s allocated for both, the map
//! grown twice); a clone of the rendered map costs what a handler's own
//! pre-built map costs it.

use std::fmt;
use std::sync::RwLock;

use http::HeaderMap;

/// The rendered fields of the last second a hit was served in.
#[derive(Default)]
pub(crate) struct HeadCache(RwLock<Option<Head>>);

struct Head {
    age_secs: u64,
    ttl: i64,
    headers: HeaderMap,
}

impl HeadCache {
    /// The fields for a hit `age_secs` old with `ttl` seconds left: the
    /// rendered ones when they are for this second, else `render`'s (kept
    /// for the next hit, unless another hit is keeping its own just now).
    pub(crate) fn get_or_render(
        &self,
        age_secs: u64,
        ttl: i64,
        render: impl FnOnce() -> HeaderMap,
    ) -> HeaderMap {
        // A poisoned lock only means a panic elsewhere while cloning: the
        // fields are rendered afresh then.
        if let Ok(head) = self.0.read()
            && let Some(head) = head.as_ref()
            && head.age_secs == age_secs
            && head.ttl == ttl
        {
            return head.headers.clone();
        }
        let headers = render();
        if let Ok(mut slot) = self.0.try_write() {
            *slot = Some(Head {
                age_secs,
                ttl,
                headers: headers.clone(),
            });
        }
        headers
    }
}

impl fmt::Debug for HeadCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadCache").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn rendered(age: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AGE, HeaderValue::from(age));
        headers
    }

    #[test]
    fn renders_once_per_second_of_age() {
        let cache = HeadCache::default();
        let mut renders = 0;
        for _ in 0..3 {
            let headers = cache.get_or_render(4, 26, || {
                renders += 1;
                rendered(4)
            });
            assert_eq!(headers["age"], "4");
        }
        assert_eq!(renders, 1);
        // The next second (RFC 9111 §5.1: `Age` is whole seconds), and the
        // same age with another `ttl`, are rendered again.
        let headers = cache.get_or_render(5, 25, || {
            renders += 1;
            rendered(5)
        });
        assert_eq!(headers["age"], "5");
        cache.get_or_render(5, 24, || {
            renders += 1;
            rendered(5)
        });
        assert_eq!(renders, 3);
    }
}
