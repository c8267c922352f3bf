//! The global in-flight limit: a count against a limit (fixed or
//! adaptive), optionally split into partitions with guaranteed shares.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::adaptive::AdaptiveState;
use super::queue::Queue;
use crate::rate_limit::RequestInfo;
use crate::sync::lock;

/// Decides which partition a request belongs to.
pub(crate) type Classifier = dyn Fn(&RequestInfo<'_>) -> bool + Send + Sync;

/// The slot a request holds in the global limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The layer has no partitions.
    Whole,
    /// Partition `index` (the last index: requests in no partition).
    Partition(u16),
}

/// Why a request is shed.
pub(crate) enum Shed {
    /// The global limit (or the request's partition share) is reached.
    Overloaded(Slot),
    /// The per-key map is full of keys with requests in flight.
    KeyCapacity,
    /// The request's key has its limit in flight.
    KeyLimited,
    /// The request waited in the queue until its deadline.
    QueueTimeout(Slot),
}

/// Partitions with guaranteed shares of the limit.
pub(crate) struct Partitions {
    /// One per configured partition, then `other` (requests that match no
    /// partition; no guaranteed share).
    pub(crate) names: Box<[Arc<str>]>,
    /// Per cent of the limit reserved for each partition (`other`: 0).
    percents: Box<[u8]>,
    /// The predicate of each configured partition (`None`: matches all).
    classifiers: Box<[Option<Arc<Classifier>>]>,
    /// Requests in flight per partition (same indices as `names`).
    in_flight: Mutex<Box<[usize]>>,
    /// Requests shed per partition.
    pub(crate) shed: Box<[AtomicU64]>,
}

impl Partitions {
    pub(crate) fn new(configured: Vec<(Arc<str>, u8, Option<Arc<Classifier>>)>) -> Self {
        let n = configured.len() + 1;
        let mut names = Vec::with_capacity(n);
        let mut percents = Vec::with_capacity(n);
        let mut classifiers = Vec::with_capacity(n);
        for (name, percent, classifier) in configured {
            names.push(name);
            percents.push(percent);
            classifiers.push(classifier);
        }
        names.push(Arc::from(OTHER));
        percents.push(0);
        Self {
            names: names.into(),
            percents: percents.into(),
            classifiers: classifiers.into(),
            in_flight: Mutex::new(vec![0; n].into()),
            shed: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The partition of a request: the first whose predicate holds, else
    /// `other`.
    pub(crate) fn classify(&self, info: &RequestInfo<'_>) -> usize {
        self.classifiers
            .iter()
            .position(|c| c.as_ref().is_none_or(|c| c(info)))
            .unwrap_or(self.classifiers.len())
    }

    /// The share of `limit` reserved for partition `index` (rounded down).
    pub(crate) fn share(&self, index: usize, limit: usize) -> usize {
        limit.saturating_mul(usize::from(self.percents[index])) / 100
    }

    /// Requests in flight in partition `index`.
    pub(crate) fn in_flight(&self, index: usize) -> usize {
        lock(&self.in_flight)[index]
    }
}

/// The most partitions a layer has (their index is a `u16` in a permit).
pub(crate) const MAX_PARTITIONS: usize = 1000;

/// The name of the requests that match no partition.
pub(crate) const OTHER: &str = "other";

/// The global limit: see the module docs.
pub(crate) struct GlobalLimiter {
    pub(crate) limit: AtomicUsize,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) partitions: Option<Partitions>,
    pub(crate) adaptive: Option<AdaptiveState>,
    pub(crate) queue: Option<Queue>,
}

impl GlobalLimiter {
    /// The slot a request would take.
    #[inline]
    pub(crate) fn slot_for(&self, info: &RequestInfo<'_>) -> Slot {
        match &self.partitions {
            None => Slot::Whole,
            // At most `MAX_PARTITIONS` (checked at build), so the index fits.
            Some(partitions) => Slot::Partition(partitions.classify(info) as u16),
        }
    }

    /// Takes a slot if the limit allows; returns the number in flight
    /// (this request included), or `None` when the request must be shed.
    #[inline]
    pub(crate) fn try_acquire(&self, slot: Slot) -> Option<usize> {
        match (slot, &self.partitions) {
            (Slot::Partition(index), Some(partitions)) => {
                self.try_acquire_partition(partitions, usize::from(index))
            }
            _ => {
                let limit = self.limit.load(Ordering::Relaxed);
                self.in_flight
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        (n < limit).then_some(n + 1)
                    })
                    .ok()
                    .map(|n| n + 1)
            }
        }
    }

    /// Partition `index` gets in while it is under its guaranteed share,
    /// or while the limit has room beyond every partition's reservation:
    /// `Σ max(in flight, share)` over the partitions never passes the
    /// limit, so no flood of one partition takes another's share.
    fn try_acquire_partition(&self, partitions: &Partitions, index: usize) -> Option<usize> {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut counts = lock(&partitions.in_flight);
        let admitted = counts[index] < partitions.share(index, limit) || {
            let reserved: usize = counts
                .iter()
                .enumerate()
                .map(|(i, &c)| c.max(partitions.share(i, limit)))
                .sum();
            reserved < limit
        };
        if !admitted {
            return None;
        }
        counts[index] += 1;
        Some(self.in_flight.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Gives a slot back and wakes a queued request, if any.
    #[inline]
    pub(crate) fn release(&self, slot: Slot) {
        if let (Slot::Partition(index), Some(partitions)) = (slot, &self.partitions) {
            let index = usize::from(index);
            let mut counts = lock(&partitions.in_flight);
            counts[index] = counts[index].saturating_sub(1);
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(queue) = &self.queue {
            queue.wake_one();
        }
    }

    /// Counts a request shed from `slot`.
    pub(crate) fn count_shed(&self, slot: Slot) {
        if let (Slot::Partition(index), Some(partitions)) = (slot, &self.partitions) {
            partitions.shed[usize::from(index)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The partition name of `slot`, for the decision marker.
    pub(crate) fn partition_name(&self, slot: Slot) -> Option<&Arc<str>> {
        match (slot, &self.partitions) {
            (Slot::Partition(index), Some(partitions)) => {
                Some(&partitions.names[usize::from(index)])
            }
            _ => None,
        }
    }
}
