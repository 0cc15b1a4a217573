//! The transforms, as extension traits of [`PCollection`](crate::PCollection).

pub mod batching;
pub mod cogroup;
pub mod combine;
pub mod composed;
pub mod derived;
pub mod elementwise;
pub mod failures;
pub mod group;
pub mod other;
pub mod regex;
pub mod sample;
pub mod side;
pub mod stateful;

pub use batching::{Batching, Dedup, DeduplicateExt, GroupIntoBatchesExt, KvDeduplicateExt};
pub use cogroup::{CoGbkResult, CoGroup, CoGroupTag};
pub use combine::{
    ApproxDistinct, CombineAggregator, CombineFn, Count, HyperLogLog, Max, Mean, Min, Partial, PartialAggregator, Sum,
    TopN,
};
pub use composed::{on, On};
pub use derived::{DistinctExt, GroupedValuesExt, KvLatestExt, KvSwapExt, LatestExt, LatestFn, WaitExt};
pub use elementwise::{
    apply_fn, DoFn, ElementwiseExt, ErasedTag, KvElementwiseExt, OutputTag, ParDoOutputs, ProcessContext,
};
pub use failures::{Failure, TryElementwiseExt, WithFailures};
pub use group::{
    CoGrouped, CombineGloballyExt, GroupExt, Grouped, KeyValue, Keyed, LateReason, Retractable, Union2, WindowExt,
};
pub use other::{ApplyExt, CollectExt, FlattenExt, PTransform, PartitionExt, ReshuffleKeyExt, TestEvent, TestStream};
pub use regex::RegexExt;
pub use sample::{KvSampleExt, SampleExt, SampleFixedSize, TopBy};
pub use side::{ErasedSide, SideInput, SideInputExt, SideInputs, SideParDoExt};
pub use stateful::{
    BagState, CombiningState, MapState, OrderedListState, SetState, StateContext, StatefulDoFn, StatefulExt,
    TimeDomain, TimerFiring, TimerSpec, ValueState,
};
