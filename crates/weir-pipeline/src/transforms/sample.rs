//! `Top` with a comparator and `Sample`, as Beam's SDK makes them: combine
//! functions that keep a bounded number of elements.
//!
//! Beam's `Sample.fixedSizeGlobally` picks elements with a random number
//! generator, so that two runs (or two runners) pick different ones. Weir
//! picks by a hash of each element's encoding instead: the choice looks
//! random (it is unrelated to the elements' order, values and arrival) yet
//! every run and every runner picks the same sample, and a test can check it.

use std::cmp::Ordering;
use std::marker::PhantomData;

use weir_runtime::keys::key_hash;

use crate::transforms::combine::CombineFn;
use crate::transforms::elementwise::ElementwiseExt;
use crate::transforms::group::{CombineGloballyExt, GroupExt};
use crate::{Data, Key, PCollection};

/// The `n` largest inputs by a comparator, largest first (Beam's
/// `Top.of(n, comparator)`; [`TopN`](crate::transforms::TopN) is the same
/// for the natural order). Among inputs the comparator finds equal, the
/// ones whose encoding is greatest are kept, so that every runner keeps the
/// same ones.
///
/// ```
/// use weir_pipeline::prelude::*;
/// let p = Pipeline::new();
/// // The two longest words.
/// let longest = p
///     .create(["a", "abcd", "ab", "abc"].map(String::from))
///     .combine_globally(TopBy::new(2, |a: &String, b: &String| a.len().cmp(&b.len())))
///     .collect();
/// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
/// assert_eq!(longest.values(), vec![vec!["abcd".to_string(), "abc".into()]]);
/// ```
pub struct TopBy<T, F> {
    n: usize,
    compare: F,
    _t: PhantomData<fn(T)>,
}

impl<T, F: Fn(&T, &T) -> Ordering> TopBy<T, F> {
    /// The `n` largest by `compare`.
    pub fn new(n: usize, compare: F) -> Self {
        TopBy { n, compare, _t: PhantomData }
    }
    /// Whether `a` ranks above `b`: by the comparator, then by encoding.
    fn above(&self, a: &T, b: &T) -> bool
    where
        T: serde::Serialize,
    {
        match (self.compare)(a, b) {
            Ordering::Equal => encoded(a) > encoded(b),
            order => order == Ordering::Greater,
        }
    }
}

fn encoded<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).unwrap_or_default()
}

impl<T, F: Clone> Clone for TopBy<T, F> {
    fn clone(&self) -> Self {
        TopBy { n: self.n, compare: self.compare.clone(), _t: PhantomData }
    }
}

impl<T: Data, F> CombineFn<T> for TopBy<T, F>
where
    F: Fn(&T, &T) -> Ordering + Clone + Send + Sync + 'static,
{
    /// The best `n` so far, best first.
    type Acc = Vec<T>;
    type Out = Vec<T>;
    fn create_accumulator(&self) -> Vec<T> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<T>, v: T) {
        if self.n == 0 || acc.len() == self.n && !self.above(&v, &acc[acc.len() - 1]) {
            return;
        }
        let at = acc.partition_point(|held| self.above(held, &v));
        acc.insert(at, v);
        acc.truncate(self.n);
    }
    fn merge_accumulators(&self, acc: &mut Vec<T>, other: Vec<T>) {
        for v in other {
            self.add_input(acc, v);
        }
    }
    fn extract_output(&self, acc: &Vec<T>) -> Vec<T> {
        acc.clone()
    }
}

/// A sample of `n` inputs, the same in every run (see the
/// [module](self)): the `n` with the highest hash of their encoding.
#[derive(Clone)]
pub struct SampleFixedSize<T> {
    n: usize,
    _t: PhantomData<fn(T)>,
}

impl<T> SampleFixedSize<T> {
    /// At most `n` inputs.
    pub fn new(n: usize) -> Self {
        SampleFixedSize { n, _t: PhantomData }
    }
}

/// The rank of an element in a sample: a hash of its encoding, scrambled so
/// that it is unrelated to the key hash that places keys on workers.
fn priority<T: serde::Serialize>(v: &T) -> u64 {
    (key_hash(v) ^ 0x5851_f42d_4c95_7f2d).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31)
}

impl<T: Data> CombineFn<T> for SampleFixedSize<T> {
    /// (priority, element), highest first.
    type Acc = Vec<(u64, T)>;
    type Out = Vec<T>;
    fn create_accumulator(&self) -> Self::Acc {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Self::Acc, v: T) {
        let p = priority(&v);
        if self.n == 0 || acc.len() == self.n && acc[acc.len() - 1].0 >= p {
            return;
        }
        let at = acc.partition_point(|(held, _)| *held >= p);
        acc.insert(at, (p, v));
        acc.truncate(self.n);
    }
    fn merge_accumulators(&self, acc: &mut Self::Acc, other: Self::Acc) {
        for (_, v) in other {
            self.add_input(acc, v);
        }
    }
    fn extract_output(&self, acc: &Self::Acc) -> Vec<T> {
        acc.iter().map(|(_, v)| v.clone()).collect()
    }
}

/// `sample_any` and `sample_fixed_size_globally`: samples of a collection
/// (Beam's `Sample`).
pub trait SampleExt<T: Data> {
    /// At most `n` of the elements, per window (Beam's `Sample.any`):
    /// which ones is not specified. Weir keeps the same ones as
    /// [`sample_fixed_size_globally`](SampleExt::sample_fixed_size_globally).
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let some = p.create(0u32..100).sample_any(3).collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(some.values().len(), 3);
    /// ```
    fn sample_any(&self, n: usize) -> PCollection<T>;
    /// One list of at most `n` elements per window, chosen as if at random
    /// but the same in every run (see the [module](self)); an empty list
    /// for an empty global window (Beam's `Sample.fixedSizeGlobally`).
    fn sample_fixed_size_globally(&self, n: usize) -> PCollection<Vec<T>>;
}

impl<T: Data> SampleExt<T> for PCollection<T> {
    fn sample_any(&self, n: usize) -> PCollection<T> {
        self.combine_globally_without_defaults(SampleFixedSize::new(n))
            .named("SampleAny")
            .flat_map(|sample: Vec<T>| sample)
            .named("SampleAny/Elements")
    }
    fn sample_fixed_size_globally(&self, n: usize) -> PCollection<Vec<T>> {
        self.combine_globally(SampleFixedSize::new(n)).named("SampleFixedSize")
    }
}

/// `sample_fixed_size_per_key`: a sample of each key's values.
pub trait KvSampleExt<K: Key, V: Data> {
    /// Per key and window, at most `n` of its values, chosen as if at
    /// random but the same in every run (Beam's `Sample.fixedSizePerKey`).
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let pairs = p.create((0u32..10).map(|i| (i % 2, i)).collect::<Vec<_>>());
    /// let samples = pairs.sample_fixed_size_per_key(2).collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert!(samples.values().iter().all(|(_, sample)| sample.len() == 2));
    /// ```
    fn sample_fixed_size_per_key(&self, n: usize) -> PCollection<(K, Vec<V>)>;
}

impl<K: Key, V: Data> KvSampleExt<K, V> for PCollection<(K, V)> {
    fn sample_fixed_size_per_key(&self, n: usize) -> PCollection<(K, Vec<V>)> {
        self.combine_per_key(SampleFixedSize::new(n)).named("SampleFixedSizePerKey")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold<C: CombineFn<u32>>(c: &C, parts: &[&[u32]]) -> C::Out {
        let mut acc = c.create_accumulator();
        for part in parts {
            let mut a = c.create_accumulator();
            for v in *part {
                c.add_input(&mut a, *v);
            }
            c.merge_accumulators(&mut acc, a);
        }
        c.extract_output(&acc)
    }

    #[test]
    fn top_by_keeps_the_largest_by_the_comparator_whatever_the_split() {
        // By the last digit, ties broken by the encoding (the larger number).
        let by_digit = TopBy::new(3, |a: &u32, b: &u32| (a % 10).cmp(&(b % 10)));
        let whole = fold(&by_digit, &[&[19, 5, 29, 8, 11, 39, 7]]);
        assert_eq!(whole, vec![39, 29, 19]);
        assert_eq!(fold(&by_digit, &[&[19, 5], &[29, 8, 11], &[39, 7]]), whole);
        assert_eq!(fold(&TopBy::new(0, |a: &u32, b: &u32| a.cmp(b)), &[&[1, 2]]), Vec::<u32>::new());
        assert_eq!(fold(&TopBy::new(5, |a: &u32, b: &u32| b.cmp(a)), &[&[4, 1], &[3]]), vec![1, 3, 4]);
    }

    #[test]
    fn a_sample_has_n_distinct_inputs_and_does_not_depend_on_order_or_split() {
        let s = SampleFixedSize::new(10);
        let all: Vec<u32> = (0..1000).collect();
        let one = fold(&s, &[&all]);
        assert_eq!(one.len(), 10);
        let mut reversed = all.clone();
        reversed.reverse();
        assert_eq!(fold(&s, &[&reversed[..500], &reversed[500..]]), one);
        let mut sorted = one.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10, "no input twice");
        // Not simply the first, last, smallest or largest ten.
        assert!(sorted != (0..10).collect::<Vec<_>>() && sorted != (990..1000).collect::<Vec<_>>());
        assert_eq!(fold(&s, &[&[7, 3]]).len(), 2, "fewer inputs than n: all of them");
    }
}
