//! What is computed per (key, window): buffering every value (GroupByKey) or
//! folding values into an accumulator (Combine).

/// Folds the values of one (key, window) into an accumulator and extracts
/// pane contents from it; Beam's `CombineFn` as the grouping sees it.
///
/// ```
/// use weir_model::Aggregator;
/// /// Sums i64 values.
/// struct Sum;
/// impl Aggregator<i64> for Sum {
///     type Acc = i64;
///     type Out = i64;
///     fn create(&self) -> i64 { 0 }
///     fn add(&self, acc: &mut i64, v: i64) { *acc += v }
///     fn merge(&self, acc: &mut i64, other: i64) { *acc += other }
///     fn extract(&self, acc: &i64) -> i64 { *acc }
/// }
/// let mut acc = Sum.create();
/// Sum.add(&mut acc, 3);
/// Sum.merge(&mut acc, 4);
/// assert_eq!(Sum.extract(&acc), 7);
/// ```
pub trait Aggregator<V> {
    /// The accumulator kept per (key, window).
    type Acc;
    /// The contents of a pane.
    type Out: Clone;
    /// An empty accumulator.
    fn create(&self) -> Self::Acc;
    /// Add one value.
    fn add(&self, acc: &mut Self::Acc, value: V);
    /// Merge another accumulator into `acc` (merging windows).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The pane contents, leaving the accumulator in place (accumulating panes).
    fn extract(&self, acc: &Self::Acc) -> Self::Out;
    /// The pane contents, consuming the accumulator (discarded after firing).
    fn extract_owned(&self, acc: Self::Acc) -> Self::Out {
        self.extract(&acc)
    }
}

/// Buffers every value: the aggregation of a GroupByKey. Pane contents are
/// the values in arrival order.
#[derive(Copy, Clone, Debug, Default)]
pub struct Buffer;

impl<V: Clone> Aggregator<V> for Buffer {
    type Acc = Vec<V>;
    type Out = Vec<V>;
    fn create(&self) -> Vec<V> {
        Vec::new()
    }
    #[inline]
    fn add(&self, acc: &mut Vec<V>, value: V) {
        acc.push(value)
    }
    fn merge(&self, acc: &mut Vec<V>, other: Vec<V>) {
        acc.extend(other)
    }
    fn extract(&self, acc: &Vec<V>) -> Vec<V> {
        acc.clone()
    }
    fn extract_owned(&self, acc: Vec<V>) -> Vec<V> {
        acc
    }
}
