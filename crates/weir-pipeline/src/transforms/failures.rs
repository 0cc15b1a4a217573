//! Element-wise transforms whose failures become data (Beam's
//! `MapElements...exceptionsInto/exceptionsVia`): an element whose function
//! returns an error, or panics, goes to a failures collection with the
//! reason, and is counted as a dead letter, instead of ending the job.
//!
//! Without these, a failing user function ends the job, on every runner and
//! every process, with the transform's name and the panic's message.

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::graph::PCollection;
use weir_runtime::batch::Batch;
use weir_runtime::data::{Data, WindowedValue};
use weir_runtime::error::panic_message;
use weir_runtime::{NodeCounters, OpContext, OpResult, Operator, WorkerInfo};
use weir_runtime::{NodeKind, Routing};

/// An element that a function could not process, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Failure<T> {
    /// The input element.
    pub element: T,
    /// The error's text, or `panicked: <message>`.
    pub error: String,
}

/// The results of a `try_` transform: what succeeded, and the failures. (A
/// `try_` transform clones each element, to report it if it fails.)
#[derive(Debug)]
pub struct WithFailures<O, I> {
    /// The outputs of the elements that succeeded.
    pub output: PCollection<O>,
    /// The elements that failed, with the reason (same timestamp and window).
    pub failures: PCollection<Failure<I>>,
}

/// Element-wise transforms that route failing elements to a failures
/// collection.
pub trait TryElementwiseExt<T: Data> {
    /// Apply `f` to every element; an `Err` or a panic sends the element to
    /// `failures`.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let parsed = p.create(["1", "x", "3"].map(String::from)).try_map(|s: String| s.parse::<u32>());
    /// let (ok, bad) = (parsed.output.collect(), parsed.failures.collect());
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(ok.values(), vec![1, 3]);
    /// assert_eq!(bad.values()[0].element, "x");
    /// ```
    fn try_map<U: Data, E: std::fmt::Display>(
        &self,
        f: impl Fn(T) -> Result<U, E> + Clone + Send + Sync + 'static,
    ) -> WithFailures<U, T>;
    /// Apply `f` to every element and flatten the results; an `Err` or a
    /// panic sends the element to `failures`.
    fn try_flat_map<U: Data, I: IntoIterator<Item = U>, E: std::fmt::Display>(
        &self,
        f: impl Fn(T) -> Result<I, E> + Clone + Send + Sync + 'static,
    ) -> WithFailures<U, T>;
}

struct TryOp<I, O, F> {
    f: F,
    _p: PhantomData<fn(I) -> O>,
}

impl<I, O, F> Operator for TryOp<I, O, F>
where
    I: Data,
    O: Data,
    F: Fn(I, &mut Vec<O>) -> Result<(), String> + Send,
{
    /// Element-wise: nothing is kept between elements.
    fn stateless(&self) -> bool {
        true
    }

    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let input = batch.into_vec::<I>()?;
        NodeCounters::add(&cx.counters.elements_in, input.len() as u64);
        let mut out = Vec::with_capacity(input.len());
        let mut failed = Vec::new();
        let mut produced = Vec::new();
        for v in input {
            produced.clear();
            let element = v.value.clone();
            let WindowedValue { value, timestamp, window, pane } = v;
            let result = catch_unwind(AssertUnwindSafe(|| (self.f)(value, &mut produced)));
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(panic) => Some(panic_message(&*panic)),
            };
            match error {
                None => out.extend(produced.drain(..).map(|o| WindowedValue::new(o, timestamp, window, pane))),
                Some(error) => failed.push(WindowedValue::new(Failure { element, error }, timestamp, window, pane)),
            }
        }
        NodeCounters::add(&cx.counters.elements_out, out.len() as u64);
        NodeCounters::add(&cx.counters.dead_letters, failed.len() as u64);
        cx.out.emit(0, out);
        cx.out.emit(1, failed);
        Ok(())
    }
}

fn try_node<T: Data, U: Data>(
    input: &PCollection<T>,
    name: &str,
    f: impl Fn(T, &mut Vec<U>) -> Result<(), String> + Clone + Send + Sync + 'static,
) -> WithFailures<U, T> {
    let p = input.pipeline().clone();
    let idx = p.add_node(
        name,
        vec![input.as_input(Routing::Forward)],
        2,
        NodeKind::Operator(Arc::new(move |_w: &WorkerInfo| {
            Box::new(TryOp::<T, U, _> { f: f.clone(), _p: PhantomData }) as Box<dyn Operator>
        })),
    );
    WithFailures {
        output: p.collection(idx, 0, input.windowing().clone()),
        failures: p.collection(idx, 1, input.windowing().clone()),
    }
}

impl<T: Data> TryElementwiseExt<T> for PCollection<T> {
    fn try_map<U: Data, E: std::fmt::Display>(
        &self,
        f: impl Fn(T) -> Result<U, E> + Clone + Send + Sync + 'static,
    ) -> WithFailures<U, T> {
        try_node(self, "TryMap", move |v, out| {
            out.push(f(v).map_err(|e| e.to_string())?);
            Ok(())
        })
    }

    fn try_flat_map<U: Data, I: IntoIterator<Item = U>, E: std::fmt::Display>(
        &self,
        f: impl Fn(T) -> Result<I, E> + Clone + Send + Sync + 'static,
    ) -> WithFailures<U, T> {
        try_node(self, "TryFlatMap", move |v, out| {
            out.extend(f(v).map_err(|e| e.to_string())?);
            Ok(())
        })
    }
}
