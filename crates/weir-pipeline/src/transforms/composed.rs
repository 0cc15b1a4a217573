//! Composed combiners: several aggregates of one input in one pass
//! (Beam's `CombineFns.compose()`), as tuples of combine fns, each fed
//! the whole input or a part of it ([`on`]).
//!
//! ```
//! use weir_pipeline::prelude::*;
//! #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
//! struct Hit { user: String, bytes: u64 }
//! let p = Pipeline::new();
//! let hits = p.create(vec![
//!     Hit { user: "a".into(), bytes: 10 },
//!     Hit { user: "a".into(), bytes: 30 },
//!     Hit { user: "b".into(), bytes: 5 },
//! ]);
//! // Per user: the number of hits, their bytes, and the largest.
//! let stats = hits
//!     .map(|h: Hit| (h.user.clone(), h))
//!     .combine_per_key((Count, on(|h: &Hit| h.bytes, Sum::new()), on(|h: &Hit| h.bytes, Max::new())))
//!     .collect();
//! p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
//! let mut got = stats.values();
//! got.sort_by(|a, b| a.0.cmp(&b.0));
//! assert_eq!(got, vec![("a".to_string(), (2, 40, Some(30))), ("b".to_string(), (1, 5, Some(5)))]);
//! ```

use std::marker::PhantomData;

use crate::transforms::combine::CombineFn;
use crate::Data;

/// A combine fn fed a part of each input (see [`on`]).
pub struct On<F, C, J> {
    part: F,
    combine: C,
    _j: PhantomData<fn(J)>,
}

impl<F: Clone, C: Clone, J> Clone for On<F, C, J> {
    fn clone(&self) -> Self {
        On { part: self.part.clone(), combine: self.combine.clone(), _j: PhantomData }
    }
}

/// `combine` fed `part(input)` instead of the input: one member of a
/// composed combiner (`(Count, on(|r: &Req| r.bytes, Sum::new()))`).
pub fn on<I, J, F, C>(part: F, combine: C) -> On<F, C, J>
where
    F: Fn(&I) -> J + Clone + Send + Sync + 'static,
    C: CombineFn<J>,
{
    On { part, combine, _j: PhantomData }
}

impl<I, J, F, C> CombineFn<I> for On<F, C, J>
where
    J: 'static,
    F: Fn(&I) -> J + Clone + Send + Sync + 'static,
    C: CombineFn<J>,
{
    type Acc = C::Acc;
    type Out = C::Out;
    fn create_accumulator(&self) -> C::Acc {
        self.combine.create_accumulator()
    }
    fn add_input(&self, acc: &mut C::Acc, input: I) {
        self.combine.add_input(acc, (self.part)(&input))
    }
    fn merge_accumulators(&self, acc: &mut C::Acc, other: C::Acc) {
        self.combine.merge_accumulators(acc, other)
    }
    fn extract_output(&self, acc: &C::Acc) -> C::Out {
        self.combine.extract_output(acc)
    }
}

/// Tuples of combine fns over the same input are a combine fn: every
/// member sees every input (cloned), in one pass.
macro_rules! composed {
    ($($c:ident $i:tt),+) => {
        impl<In: Data, $($c: CombineFn<In>),+> CombineFn<In> for ($($c,)+) {
            type Acc = ($($c::Acc,)+);
            type Out = ($($c::Out,)+);
            fn create_accumulator(&self) -> Self::Acc {
                ($(self.$i.create_accumulator(),)+)
            }
            fn add_input(&self, acc: &mut Self::Acc, input: In) {
                $(self.$i.add_input(&mut acc.$i, input.clone());)+
            }
            fn merge_accumulators(&self, acc: &mut Self::Acc, other: Self::Acc) {
                $(self.$i.merge_accumulators(&mut acc.$i, other.$i);)+
            }
            fn extract_output(&self, acc: &Self::Acc) -> Self::Out {
                ($(self.$i.extract_output(&acc.$i),)+)
            }
        }
    };
}

composed!(A 0, B 1);
composed!(A 0, B 1, C 2);
composed!(A 0, B 1, C 2, D 3);
composed!(A 0, B 1, C 2, D 3, E 4);
