//! Transforms made of the others, as Beam's SDK makes them: `KvSwap`,
//! `Distinct`, `Latest` and `Wait.on`.

use std::marker::PhantomData;

use weir_model::Timestamp;

use crate::transforms::combine::{CombineFn, Count};
use crate::transforms::elementwise::{DoFn, ElementwiseExt, KvElementwiseExt, ProcessContext};
use crate::transforms::group::{CombineGloballyExt, GroupExt};
use crate::transforms::side::{SideInputExt, SideParDoExt};
use crate::{Data, Key, PCollection};

/// `kv_swap`: (key, value) pairs turned around (Beam's `KvSwap`).
pub trait KvSwapExt<K: Data, V: Data> {
    /// Each (key, value) as (value, key), with its timestamp, window and pane.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let swapped = p.create(vec![("a".to_string(), 1u32)]).kv_swap().collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(swapped.values(), vec![(1, "a".to_string())]);
    /// ```
    fn kv_swap(&self) -> PCollection<(V, K)>;
}

impl<K: Data, V: Data> KvSwapExt<K, V> for PCollection<(K, V)> {
    fn kv_swap(&self) -> PCollection<(V, K)> {
        self.map(|(k, v)| (v, k)).named("KvSwap")
    }
}

/// `distinct`: each distinct element once per window (Beam's `Distinct`).
pub trait DistinctExt<T: Key> {
    /// Each distinct element once per window and pane, as Beam's
    /// `Distinct.create()` (a `Combine.perKey` on the element, then its
    /// keys): with the default trigger, once per window, at the end of the
    /// window; with early or late panes, once per pane that has it.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let distinct = p.create(vec![3u32, 1, 3, 2, 1]).distinct().collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// let mut got = distinct.values();
    /// got.sort();
    /// assert_eq!(got, vec![1, 2, 3]);
    /// ```
    fn distinct(&self) -> PCollection<T>;
}

impl<T: Key> DistinctExt<T> for PCollection<T> {
    fn distinct(&self) -> PCollection<T> {
        self.map(|v| (v, ())).named("Distinct/Key").combine_per_key(Count).named("Distinct/Combine").keys()
    }
}

/// The latest of the values added (by timestamp; among equal timestamps,
/// the one whose encoding is greatest, so that every runner agrees).
#[derive(Clone)]
pub struct LatestFn<V>(PhantomData<fn(V)>);

impl<V> Default for LatestFn<V> {
    fn default() -> Self {
        LatestFn(PhantomData)
    }
}

fn later<V: Data>(a: &(Timestamp, V), b: &(Timestamp, V)) -> bool {
    match a.0.cmp(&b.0) {
        std::cmp::Ordering::Equal => {
            let encode = |v: &V| bincode::serialize(v).unwrap_or_default();
            encode(&a.1) > encode(&b.1)
        }
        order => order == std::cmp::Ordering::Greater,
    }
}

impl<V: Data> CombineFn<(Timestamp, V)> for LatestFn<V> {
    type Acc = Option<(Timestamp, V)>;
    type Out = Option<V>;
    fn create_accumulator(&self) -> Self::Acc {
        None
    }
    fn add_input(&self, acc: &mut Self::Acc, input: (Timestamp, V)) {
        if acc.as_ref().is_none_or(|held| later(&input, held)) {
            *acc = Some(input);
        }
    }
    fn merge_accumulators(&self, acc: &mut Self::Acc, other: Self::Acc) {
        if let Some(other) = other {
            self.add_input(acc, other);
        }
    }
    fn extract_output(&self, acc: &Self::Acc) -> Option<V> {
        acc.as_ref().map(|(_, v)| v.clone())
    }
}

/// Pairs each element with its timestamp.
#[derive(Clone)]
struct Reify<T>(PhantomData<fn(T)>);

impl<T: Data> DoFn for Reify<T> {
    type In = T;
    type Out = (Timestamp, T);
    fn process(&mut self, cx: &mut ProcessContext<'_, T, (Timestamp, T)>) {
        let t = cx.timestamp();
        let v = cx.element().clone();
        cx.output((t, v));
    }
}

/// `latest_globally`: the element with the latest timestamp (Beam's `Latest`).
pub trait LatestExt<T: Data> {
    /// Per window, the element with the latest event timestamp (among
    /// equal timestamps, the one whose encoding is greatest); nothing for
    /// a window without elements (Beam gives `null` there).
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let events = p.create(vec![(1i64, "a".to_string()), (3, "c".into()), (2, "b".into())]);
    /// let latest = events
    ///     .with_timestamps(|(t, _)| Timestamp::from_millis(*t))
    ///     .map(|(_, s)| s)
    ///     .latest_globally()
    ///     .collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(latest.values(), vec!["c".to_string()]);
    /// ```
    fn latest_globally(&self) -> PCollection<T>;
}

impl<T: Data> LatestExt<T> for PCollection<T> {
    fn latest_globally(&self) -> PCollection<T> {
        self.par_do(Reify(PhantomData))
            .named("Latest/Reify")
            .combine_globally_without_defaults(LatestFn::default())
            .named("Latest")
            .flat_map(|v: Option<T>| v)
            .named("Latest/Present")
    }
}

/// `latest_per_key`: per key, the value with the latest timestamp.
pub trait KvLatestExt<K: Key, V: Data> {
    /// Per key and window, the value with the latest event timestamp
    /// (among equal timestamps, the one whose encoding is greatest), as
    /// Beam's `Latest.perKey()`.
    fn latest_per_key(&self) -> PCollection<(K, V)>;
}

impl<K: Key, V: Data> KvLatestExt<K, V> for PCollection<(K, V)> {
    fn latest_per_key(&self) -> PCollection<(K, V)> {
        self.par_do(Reify(PhantomData))
            .named("LatestPerKey/Reify")
            .map(|(t, (k, v))| (k, (t, v)))
            .named("LatestPerKey/Key")
            .combine_per_key(LatestFn::default())
            .named("LatestPerKey")
            .flat_map(|(k, v): (K, Option<V>)| v.map(|v| (k, v)))
            .named("LatestPerKey/Present")
    }
}

/// Passes each element on as it is.
#[derive(Clone)]
struct PassThrough<T>(PhantomData<fn(T)>);

impl<T: Data> DoFn for PassThrough<T> {
    type In = T;
    type Out = T;
    fn process(&mut self, cx: &mut ProcessContext<'_, T, T>) {
        let v = cx.element().clone();
        cx.output(v);
    }
}

/// `wait_on`: hold elements back until a signal is done (Beam's `Wait.on`).
pub trait WaitExt<T: Data> {
    /// Each element, unchanged, once the window of `signal` that its own
    /// window maps to is done: the signal's watermark passed that window's
    /// end, or the signal ended (Beam's `Wait.on`, which Beam builds on a
    /// side input too). E.g. write to a table only after the rows it refers
    /// to were written. Waiting elements hold the output watermark back.
    /// A signal in the global window that never ends holds everything.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let written = p.create(["row 1".to_string(), "row 2".into()]);
    /// let notices = p.create(["rows written".to_string()]).wait_on(&written).collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(notices.values(), vec!["rows written".to_string()]);
    /// ```
    fn wait_on<S: Data>(&self, signal: &PCollection<S>) -> PCollection<T>;
}

impl<T: Data> WaitExt<T> for PCollection<T> {
    fn wait_on<S: Data>(&self, signal: &PCollection<S>) -> PCollection<T> {
        // One value per signal window, not the signal itself, in the side input.
        let done = signal
            .map(|_| ())
            .named("Wait/Signal")
            .combine_globally_without_defaults(Count)
            .named("Wait/Done")
            .as_side_input();
        self.par_do_with_side_inputs(PassThrough(PhantomData), &done, ()).main.named("Wait")
    }
}

/// `combine_grouped_values`: a combine fn over already grouped values
/// (Beam's `Combine.groupedValues`).
pub trait GroupedValuesExt<K: Data, V: Data> {
    /// Each (key, values) as (key, `c` over the values), with the element's
    /// timestamp, window and pane: for the output of `group_by_key` (or any
    /// collection of keys with lists), where `combine_per_key` would have
    /// grouped and combined in one step.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let grouped = p.create([("a".to_string(), 1u64), ("a".into(), 4), ("b".into(), 2)]).group_by_key();
    /// let sums = grouped.combine_grouped_values(Sum::new()).collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// let mut got = sums.values();
    /// got.sort();
    /// assert_eq!(got, vec![("a".to_string(), 5), ("b".to_string(), 2)]);
    /// ```
    fn combine_grouped_values<C: CombineFn<V>>(&self, c: C) -> PCollection<(K, C::Out)>;
}

impl<K: Data, V: Data> GroupedValuesExt<K, V> for PCollection<(K, Vec<V>)> {
    fn combine_grouped_values<C: CombineFn<V>>(&self, c: C) -> PCollection<(K, C::Out)> {
        self.map(move |(k, vs): (K, Vec<V>)| {
            let mut acc = c.create_accumulator();
            for v in vs {
                c.add_input(&mut acc, v);
            }
            (k, c.extract_output(&acc))
        })
        .named("Combine.GroupedValues")
    }
}
