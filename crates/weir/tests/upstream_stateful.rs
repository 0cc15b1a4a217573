//! Beam's stateful-processing tests, ported to Weir and run on every runner
//! (reference, Timely x1, Timely x4, and a two-process Timely cluster on
//! 127.0.0.1 for the 54 runs whose pipelines do not move processing time
//! with a TestStream, which needs one process), each asserting the upstream expected
//! output exactly (as a multiset, as upstream's `containsInAnyOrder`, unless
//! said otherwise).
//!
//! Sources: Java `sdks/java/core/src/test/java/org/apache/beam/sdk/transforms/ParDoTest.java`
//! (nested `StateTests`, `TimerTests`, `TimerFamilyTests`, `KeyTests`,
//! `OnWindowExpirationTests`) and Python
//! `sdks/python/apache_beam/transforms/userstate_test.py`
//! (`StatefulDoFnOnDirectRunnerTest`). Where a Java test has a bounded and an
//! unbounded variant, both run the same DoFn over a `create` (bounded) or a
//! `TestStream` (unbounded). Java's `Create.of` gives elements the minimum
//! timestamp; Java's and Python's `TestStream.addElements` without a
//! timestamp give the current watermark: the ports do the same.
//!
//! Assertions that upstream makes inside a DoFn (JUnit `assertEquals` in
//! `processElement`) fail the pipeline here (`StateContext::fail`), so the run
//! returns an error.
//!
//! # Ported
//!
//! Java `ParDoTest.StateTests`: testValueStateSimple, testValueStateDedup,
//! testValueStateFixedWindows, testValueStateSameId, testBagState,
//! testSetState, testMapState, testOrderedListState,
//! testOrderedListStateRangeFetch, testOrderedListStateRangeDelete,
//! testCombiningState, testCombiningStateParameterSuperclass,
//! testRequiresTimeSortedInput, testRequiresTimeSortedInputWithTestStream,
//! testRequiresTimeSortedInputWithLateDataAndAllowedLateness,
//! testRequiresTimeSortedInputWithLateData,
//! testTwoRequiresTimeSortedInputWithLateData.
//! `StateCoderInferenceTests`: testCombiningStateCoderInference (a CombineFn
//! with a user-defined accumulator).
//! `TimerTests`: testEventTimeTimerBounded, testGbkFollowedByUserTimers,
//! testEventTimeTimerAlignBounded, testTimerReceivedInOriginalWindow,
//! testEventTimeTimerAbsolute, testEventTimeTimerLoop (`@Ignore`d upstream
//! for runner bugs; its expected output is ported),
//! testEventTimeTimerMultipleKeys, testAbsoluteProcessingTimeTimerRejected,
//! testOutOfBoundsEventTimeTimer, testOutputTimestampDefaultBounded,
//! testOutputTimestampDefaultUnbounded, testOutOfBoundsEventTimeTimerHold,
//! testOutOfBoundsProcessingTimeTimerHold, testSimpleProcessingTimerTimer,
//! testEventTimeTimerUnbounded, testEventTimeTimerAlignUnbounded,
//! testEventTimeTimerAlignAfterGcTimeUnbounded,
//! testProcessingTimeTimerCanBeReset, testEventTimeTimerCanBeReset,
//! testEventTimeTimerOrdering, testEventTimeTimerOrderingWithCreateBounded,
//! duplicateTimerSetting, testTwoTimersSettingEachOther,
//! testTwoTimersSettingEachOtherWithCreateAsInputBounded,
//! testOutputTimestamp, testOutputTimestampWithProcessingTime.
//! `TimerFamilyTests`: testTimerFamilyEventTime{Bounded,Unbounded},
//! testTimerWithMultipleTimerFamily, testTimerFamilyAndTimer,
//! testTimerFamilyProcessingTime.
//! `KeyTests`: testKeyInOnTimer, testKeyInOnTimerWithGenericKey.
//! `OnWindowExpirationTests`: testOnWindowExpirationSimple{Bounded,Unbounded}.
//!
//! Python `StatefulDoFnOnDirectRunnerTest`: test_simple_stateful_dofn,
//! test_clearing_bag_state, test_simple_set_stateful_dofn,
//! test_clearing_set_state, test_stateful_set_state_portably,
//! test_stateful_set_state_clean_portably, test_stateful_sum_then_gbk,
//! test_simple_stateful_dofn_combining, test_timer_output_timestamp,
//! test_timer_output_timestamp_and_window, test_index_assignment,
//! test_hash_join.
//!
//! # Not ported, and why
//!
//! - testValueStateTaggedOutput: a `StatefulDoFn` has one output in Weir (no
//!   tagged outputs yet).
//! - testBagStateSideInput, testStateSideInput: stateful DoFns take no side
//!   inputs in Weir yet.
//! - testStateNotKeyed, testTimerNotKeyed, testKeyInOnTimerWithoutKV,
//!   testKeyInOnTimerWithWrongKeyType, testStateNotDeterministic,
//!   testTimerNotDeterministic: rejected at compile time in Weir
//!   (`par_do_stateful` exists only on `PCollection<(K, V)>` with `K: Key`,
//!   which needs `Hash + Ord`, so `f64` keys do not compile; the key type is
//!   the DoFn's associated type).
//! - testCoderInferenceOfList and the other `*CoderInference*` /
//!   `*CoderInferenceFailure` tests (except the CombineFn one above): coders
//!   are serde in Weir, inferred by the compiler.
//! - testTwoTimersSettingEachOtherWithCreateAsInputUnbounded,
//!   testEventTimeTimerOrderingWithCreateUnbounded: Weir has no "unbounded"
//!   flag on a created collection; the TestStream variants cover them.
//! - testPipelineOptionsParameterOnTimer: Weir has no pipeline options.
//! - Python test_generate_sequence_with_realtime_timer: it sets processing-time
//!   timers to absolute times, which Weir rejects as Java does
//!   (testAbsoluteProcessingTimeTimerRejected).
//! - Python test_stateful_dofn_nonkeyed_input and the DoFn-signature
//!   validation tests (test_bad_signatures, test_validation_typos, …):
//!   compile-time errors in Weir.

use weir::prelude::*;

mod common;
use common::{on_two_processes, runners, ts};

/// Fail the pipeline (not the test thread) when an in-DoFn check fails.
macro_rules! check {
    ($cx:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            $cx.fail(format!($($msg)+));
        }
    };
}

fn s(v: &str) -> String {
    v.to_string()
}

/// Runs the pipeline that `build` makes on every runner and returns the
/// collected output per runner.
fn outputs<T: Data>(build: impl Fn(&Pipeline) -> PCollection<T>) -> Vec<(&'static str, Vec<WindowedValue<T>>)> {
    let mut all: Vec<(&'static str, Vec<WindowedValue<T>>)> = runners()
        .into_iter()
        .map(|(name, runner)| {
            let p = Pipeline::new();
            let out = build(&p).collect();
            p.run_with(&*runner()).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, out.windowed())
        })
        .collect();
    // Also on two processes, unless the pipeline moves processing time
    // with a TestStream (which needs one process).
    if let Some(out) = on_two_processes(&build) {
        all.push(("timely 2 processes", out));
    }
    all
}

/// Upstream's `containsInAnyOrder`: the output values, as a multiset, on
/// every runner.
fn assert_values<T: Data + Ord>(build: impl Fn(&Pipeline) -> PCollection<T>, mut expected: Vec<T>) {
    expected.sort();
    for (name, got) in outputs(build) {
        let mut got: Vec<T> = got.into_iter().map(|v| v.value).collect();
        got.sort();
        assert_eq!(got, expected, "{name}");
    }
}

/// The run fails on every runner, with a message containing each of `parts`.
fn assert_fails<T: Data>(build: impl Fn(&Pipeline) -> PCollection<T>, parts: &[&str]) {
    for (name, runner) in runners() {
        let p = Pipeline::new();
        build(&p).collect();
        let err = p.run_with(&*runner()).expect_err(name).to_string();
        for part in parts {
            assert!(err.contains(part), "{name}: '{err}' does not contain '{part}'");
        }
    }
}

/// A deterministic shuffle (upstream uses `Collections.shuffle`).
fn shuffle<T>(v: &mut [T]) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

// ---------------------------------------------------------------------------
// ParDoTest.StateTests
// ---------------------------------------------------------------------------

const FOO_INT: ValueState<i32> = ValueState::new("foo");

/// Outputs the state's value (default `start`), then adds `step`.
#[derive(Clone)]
struct CountUp {
    start: i32,
    step: i32,
}

impl StatefulDoFn for CountUp {
    type Key = String;
    type Value = i32;
    type Out = i32;
    fn process(&mut self, cx: &mut StateContext<'_, String, i32>, _v: i32) {
        let current = FOO_INT.read(cx).unwrap_or(self.start);
        cx.output(current);
        FOO_INT.write(cx, current + self.step);
    }
}

fn hello3(p: &Pipeline) -> PCollection<(String, i32)> {
    p.create([(s("hello"), 42), (s("hello"), 97), (s("hello"), 84)])
}

/// Java `ParDoTest.StateTests#testValueStateSimple`.
#[test]
fn test_value_state_simple() {
    assert_values(|p| hello3(p).par_do_stateful(CountUp { start: 0, step: 1 }), vec![0, 1, 2]);
}

/// Emits a key's value the first time the key is seen.
#[derive(Clone)]
struct OnePerKey;

impl StatefulDoFn for OnePerKey {
    type Key = i32;
    type Value = i32;
    type Out = i32;
    fn process(&mut self, cx: &mut StateContext<'_, i32, i32>, v: i32) {
        let seen = FOO_INT.read(cx).unwrap_or(0);
        if seen == 0 {
            FOO_INT.write(cx, seen + 1);
            cx.output(v);
        }
    }
}

/// Java `ParDoTest.StateTests#testValueStateDedup`.
#[test]
fn test_value_state_dedup() {
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for key in 0..50 {
        expected.push(1000 + key);
        for _ in 0..15 {
            input.push((key, 1000 + key));
        }
    }
    shuffle(&mut input);
    assert_values(|p| p.create(input.clone()).par_do_stateful(OnePerKey), expected);
}

fn fixed(ms: i64) -> WindowingStrategy {
    WindowingStrategy::new(FixedWindows::of(Duration::from_millis(ms)).unwrap())
}

/// Java `ParDoTest.StateTests#testValueStateFixedWindows`.
#[test]
fn test_value_state_fixed_windows() {
    let build = |p: &Pipeline| {
        p.create_timestamped([
            ((s("hello"), 7), ts(1)),
            ((s("hello"), 14), ts(2)),
            ((s("hello"), 21), ts(3)),
            ((s("hello"), 28), ts(11)),
            ((s("hello"), 35), ts(13)),
        ])
        .window_into(fixed(10))
        .par_do_stateful(CountUp { start: 0, step: 1 })
    };
    let (first, second) = (Window::interval(0, 10), Window::interval(10, 20));
    for (name, got) in outputs(build) {
        let mut got: Vec<(Window, i32)> = got.into_iter().map(|v| (v.window, v.value)).collect();
        got.sort();
        assert_eq!(got, vec![(first, 0), (first, 1), (first, 2), (second, 0), (second, 1)], "{name}");
    }
}

/// Outputs `("sizzle", n)` for n = 0, 1, …
#[derive(Clone)]
struct Sizzle;

impl StatefulDoFn for Sizzle {
    type Key = String;
    type Value = i32;
    type Out = (String, i32);
    fn process(&mut self, cx: &mut StateContext<'_, String, (String, i32)>, _v: i32) {
        let current = FOO_INT.read(cx).unwrap_or(0);
        cx.output((s("sizzle"), current));
        FOO_INT.write(cx, current + 1);
    }
}

/// Java `ParDoTest.StateTests#testValueStateSameId`: two stateful ParDos with
/// the same state id do not share state.
#[test]
fn test_value_state_same_id() {
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let intermediate = hello3(&p).par_do_stateful(Sizzle);
        let output = intermediate.par_do_stateful(CountUp { start: 13, step: 13 }).collect();
        let intermediate = intermediate.collect();
        p.run_with(&*runner()).unwrap();
        let mut i = intermediate.values();
        i.sort();
        assert_eq!(i, vec![(s("sizzle"), 0), (s("sizzle"), 1), (s("sizzle"), 2)], "{name}");
        let mut o = output.values();
        o.sort();
        assert_eq!(o, vec![13, 26, 39], "{name}");
    }
}

const BAG_INT: BagState<i32> = BagState::new("foo");

#[derive(Clone)]
struct BagFour;

impl StatefulDoFn for BagFour {
    type Key = String;
    type Value = i32;
    type Out = Vec<i32>;
    fn process(&mut self, cx: &mut StateContext<'_, String, Vec<i32>>, v: i32) {
        BAG_INT.add(cx, v);
        let not_empty = !BAG_INT.is_empty(cx);
        check!(cx, not_empty, "bag is empty after add");
        let current = BAG_INT.read(cx);
        if current.len() >= 4 {
            // A read is a snapshot: later adds do not change it.
            BAG_INT.add(cx, -1);
            let now = BAG_INT.read(cx).len();
            check!(cx, current.len() == 4 && now == 5, "read sizes {} and {now}", current.len());
            let mut sorted = current;
            sorted.sort();
            cx.output(sorted);
        }
    }
}

/// Java `ParDoTest.StateTests#testBagState`.
#[test]
fn test_bag_state() {
    assert_values(
        |p| p.create([(s("hello"), 97), (s("hello"), 42), (s("hello"), 84), (s("hello"), 12)]).par_do_stateful(BagFour),
        vec![vec![12, 42, 84, 97]],
    );
}

const SET_INT: SetState<i32> = SetState::new("foo");
const COUNT_INT: CombiningState<i32, Sum<i32>> = CombiningState::new("count", Sum::new_const());

#[derive(Clone)]
struct SetFour;

impl StatefulDoFn for SetFour {
    type Key = String;
    type Value = i32;
    type Out = Vec<i32>;
    fn process(&mut self, cx: &mut StateContext<'_, String, Vec<i32>>, v: i32) {
        SET_INT.add(cx, v);
        let not_empty = !SET_INT.is_empty(cx);
        check!(cx, not_empty, "set is empty after add");
        COUNT_INT.add(cx, 1);
        if COUNT_INT.read(cx) >= 4 {
            let ints = SET_INT.read(cx);
            SET_INT.add(cx, -1);
            let now = SET_INT.read(cx).len();
            check!(cx, ints.len() == 3 && now == 4, "read sizes {} and {now}", ints.len());
            cx.output(ints); // the set, in order
        }
    }
}

/// Java `ParDoTest.StateTests#testSetState` (the set is output as a sorted list).
#[test]
fn test_set_state() {
    assert_values(
        |p| p.create([(s("hello"), 97), (s("hello"), 42), (s("hello"), 42), (s("hello"), 12)]).par_do_stateful(SetFour),
        vec![vec![12, 42, 97]],
    );
}

const MAP_STR_INT: MapState<String, i32> = MapState::new("foo");

#[derive(Clone)]
struct MapFour;

impl StatefulDoFn for MapFour {
    type Key = String;
    type Value = (String, i32);
    type Out = (String, i32);
    fn process(&mut self, cx: &mut StateContext<'_, String, (String, i32)>, (k, v): (String, i32)) {
        MAP_STR_INT.put(cx, k, v);
        COUNT_INT.add(cx, 1);
        if COUNT_INT.read(cx) >= 4 {
            let iterate = MAP_STR_INT.entries(cx);
            MAP_STR_INT.put(cx, s("BadKey"), -1);
            let now = MAP_STR_INT.entries(cx).len();
            check!(cx, iterate.len() == 3 && now == 4, "entries sizes {} and {now}", iterate.len());
            for e in iterate {
                cx.output(e);
            }
        }
    }
}

/// Java `ParDoTest.StateTests#testMapState`.
#[test]
fn test_map_state() {
    let input = [(s("a"), 97), (s("b"), 42), (s("b"), 42), (s("c"), 12)].map(|kv| (s("hello"), kv));
    assert_values(|p| p.create(input.clone()).par_do_stateful(MapFour), vec![(s("a"), 97), (s("b"), 42), (s("c"), 12)]);
}

const ORDERED: OrderedListState<String> = OrderedListState::new("foo");

/// Adds each (value, timestamp) to an ordered list; at window expiration
/// outputs `reads` of it (`None`: all; `Some((min, limit))`: a range).
#[derive(Clone)]
struct OrderedReads {
    reads: Vec<Option<(i64, i64)>>,
    clear_with_timer_at: Option<i64>,
}

const ORDERED_TIMER: TimerSpec = TimerSpec::event_time("timer");

impl StatefulDoFn for OrderedReads {
    type Key = String;
    type Value = (String, Timestamp);
    type Out = Vec<(String, Timestamp)>;
    fn process(&mut self, cx: &mut StateContext<'_, String, Self::Out>, (v, t): (String, Timestamp)) {
        ORDERED.add(cx, v, t);
        if let Some(at) = self.clear_with_timer_at {
            ORDERED_TIMER.set(cx, ts(at));
        }
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, Self::Out>, _t: &TimerFiring) {
        let t = cx.timestamp();
        ORDERED.clear_range(cx, ts(0), t.next());
    }
    fn on_window_expiration(&mut self, cx: &mut StateContext<'_, String, Self::Out>) {
        for r in self.reads.clone() {
            let got = match r {
                None => ORDERED.read(cx),
                Some((min, limit)) => ORDERED.read_range(cx, ts(min), ts(limit)),
            };
            cx.output(got);
        }
    }
}

fn ordered_input(p: &Pipeline) -> PCollection<(String, (String, Timestamp))> {
    p.create([(s("a"), 97), (s("b"), 42), (s("b"), 52), (s("c"), 12)].map(|(v, t)| (s("hello"), (v, ts(t)))))
}

fn tv(list: &[(&str, i64)]) -> Vec<(String, Timestamp)> {
    list.iter().map(|(v, t)| (s(v), ts(*t))).collect()
}

/// Java `ParDoTest.StateTests#testOrderedListState`.
#[test]
fn test_ordered_list_state() {
    assert_values(
        |p| ordered_input(p).par_do_stateful(OrderedReads { reads: vec![None], clear_with_timer_at: None }),
        vec![tv(&[("c", 12), ("b", 42), ("b", 52), ("a", 97)])],
    );
}

/// Java `ParDoTest.StateTests#testOrderedListStateRangeFetch`.
#[test]
fn test_ordered_list_state_range_fetch() {
    let reads = vec![Some((0, 12)), Some((0, 13)), Some((13, 53)), Some((52, 98))];
    assert_values(
        |p| ordered_input(p).par_do_stateful(OrderedReads { reads: reads.clone(), clear_with_timer_at: None }),
        vec![tv(&[]), tv(&[("c", 12)]), tv(&[("b", 42), ("b", 52)]), tv(&[("b", 52), ("a", 97)])],
    );
}

/// Java `ParDoTest.StateTests#testOrderedListStateRangeDelete`: a timer at 42
/// clears `[0, 43)`.
#[test]
fn test_ordered_list_state_range_delete() {
    assert_values(
        |p| ordered_input(p).par_do_stateful(OrderedReads { reads: vec![None], clear_with_timer_at: Some(42) }),
        vec![tv(&[("b", 52), ("a", 97)])],
    );
}

fn mean_state() -> CombiningState<f64, Mean<f64>> {
    CombiningState::new("foo", Mean::new())
}

#[derive(Clone)]
struct RightOnMean;

impl StatefulDoFn for RightOnMean {
    type Key = String;
    type Value = f64;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, v: f64) {
        let state = mean_state();
        state.add(cx, v);
        if state.read(cx).is_some_and(|m| (m - 0.5).abs() < 0.0001) {
            cx.output(s("right on"));
        }
    }
}

/// Java `ParDoTest.StateTests#testCombiningState`: the mean is 0.5 exactly once.
#[test]
fn test_combining_state() {
    assert_values(
        |p| p.create([(s("hello"), 0.3), (s("hello"), 0.6), (s("hello"), 0.6)]).par_do_stateful(RightOnMean),
        vec![s("right on")],
    );
}

/// Outputs "right on" when the combined sum equals `expected`.
#[derive(Clone)]
struct RightOnSum<C> {
    combine: C,
    expected: i32,
}

impl<C: CombineFn<i32, Out = i32>> StatefulDoFn for RightOnSum<C>
where
    C::Acc: serde::Serialize + serde::de::DeserializeOwned,
{
    type Key = i32;
    type Value = i32;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, i32, String>, v: i32) {
        let state = CombiningState::new("foo", self.combine.clone());
        state.add(cx, v);
        if state.read(cx) == self.expected {
            cx.output(s("right on"));
        }
    }
}

/// Java `ParDoTest.StateTests#testCombiningStateParameterSuperclass`.
#[test]
fn test_combining_state_parameter_superclass() {
    assert_values(
        |p| p.create([(123, 4), (123, 7), (123, -3)]).par_do_stateful(RightOnSum { combine: Sum::new(), expected: 8 }),
        vec![s("right on")],
    );
}

/// A user-defined accumulator (upstream's `MyInteger`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct MyInteger(i32);

/// Upstream's anonymous `CombineFn<Integer, MyInteger, Integer>`.
#[derive(Clone)]
struct MyIntegerSum;

impl CombineFn<i32> for MyIntegerSum {
    type Acc = MyInteger;
    type Out = i32;
    fn create_accumulator(&self) -> MyInteger {
        MyInteger(0)
    }
    fn add_input(&self, acc: &mut MyInteger, v: i32) {
        acc.0 += v;
    }
    fn merge_accumulators(&self, acc: &mut MyInteger, other: MyInteger) {
        acc.0 += other.0;
    }
    fn extract_output(&self, acc: &MyInteger) -> i32 {
        acc.0
    }
}

/// Java `ParDoTest.StateCoderInferenceTests#testCombiningStateCoderInference`.
#[test]
fn test_combining_state_coder_inference() {
    assert_values(
        |p| p.create([(1, 3), (1, 6), (1, 7)]).par_do_stateful(RightOnSum { combine: MyIntegerSum, expected: 16 }),
        vec![s("right on")],
    );
}

// ---------------------------------------------------------------------------
// ParDoTest.TimerTests
// ---------------------------------------------------------------------------

const FOO_TIMER: TimerSpec = TimerSpec::event_time("foo");
const FOO_PT_TIMER: TimerSpec = TimerSpec::processing_time("foo");

/// On each element: sets the timer (how: `set`) and outputs 3; on the timer:
/// outputs 42 if it fired in `domain`.
#[derive(Clone)]
struct ThreeThenFortyTwo<V> {
    set: fn(&mut StateContext<'_, String, i64>),
    domain: TimeDomain,
    _v: std::marker::PhantomData<fn(V)>,
}

impl<V: Data> StatefulDoFn for ThreeThenFortyTwo<V> {
    type Key = String;
    type Value = V;
    type Out = i64;
    fn process(&mut self, cx: &mut StateContext<'_, String, i64>, _v: V) {
        (self.set)(cx);
        cx.output(3);
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, i64>, t: &TimerFiring) {
        if t.domain == self.domain {
            cx.output(42);
        }
    }
}

fn three_then_42<V>(domain: TimeDomain, set: fn(&mut StateContext<'_, String, i64>)) -> ThreeThenFortyTwo<V> {
    ThreeThenFortyTwo { set, domain, _v: std::marker::PhantomData }
}

fn in_one_second(cx: &mut StateContext<'_, String, i64>) {
    FOO_TIMER.set_relative(cx, Duration::from_secs(1), None);
}

/// Java `ParDoTest.TimerTests#testEventTimeTimerBounded`.
#[test]
fn test_event_time_timer_bounded() {
    assert_values(
        |p| p.create([(s("hello"), 37i64)]).par_do_stateful(three_then_42(TimeDomain::EventTime, in_one_second)),
        vec![3, 42],
    );
}

/// Java `ParDoTest.TimerTests#testGbkFollowedByUserTimers`.
#[test]
fn test_gbk_followed_by_user_timers() {
    assert_values(
        |p| {
            p.create([(s("hello"), 37i64)])
                .group_by_key()
                .par_do_stateful(three_then_42::<Vec<i64>>(TimeDomain::EventTime, in_one_second))
        },
        vec![3, 42],
    );
}

/// Outputs `(3, element timestamp)`; sets the timer `align(period).offset(offset)`
/// relative; on the timer outputs `(42, timer timestamp)`.
#[derive(Clone)]
struct Aligned {
    period: Duration,
    offset: Duration,
}

impl StatefulDoFn for Aligned {
    type Key = String;
    type Value = i64;
    type Out = (i64, Timestamp);
    fn process(&mut self, cx: &mut StateContext<'_, String, (i64, Timestamp)>, _v: i64) {
        FOO_TIMER.set_relative(cx, self.offset, Some(self.period));
        let t = cx.timestamp();
        cx.output((3, t));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, (i64, Timestamp)>, _t: &TimerFiring) {
        let t = cx.timestamp();
        cx.output((42, t));
    }
}

/// Java `ParDoTest.TimerTests#testEventTimeTimerAlignBounded`: from the
/// minimum timestamp, Java's truncated remainder puts the aligned timer at
/// `MIN + 1774`.
#[test]
fn test_event_time_timer_align_bounded() {
    let fn_ = Aligned { period: Duration::from_secs(1), offset: Duration::from_millis(1) };
    assert_values(
        |p| p.create([(s("hello"), 37i64)]).par_do_stateful(fn_.clone()),
        vec![(3, Timestamp::MIN), (42, Timestamp::from_millis(Timestamp::MIN.millis() + 1774))],
    );
}

/// Outputs the window a timer fires in.
#[derive(Clone)]
struct TimerWindow;

impl StatefulDoFn for TimerWindow {
    type Key = String;
    type Value = i32;
    type Out = Window;
    fn process(&mut self, cx: &mut StateContext<'_, String, Window>, _v: i32) {
        FOO_TIMER.set_relative(cx, Duration::from_secs(1), None);
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, Window>, _t: &TimerFiring) {
        let w = cx.window();
        cx.output(w);
    }
}

/// Java `ParDoTest.TimerTests#testTimerReceivedInOriginalWindow`.
#[test]
fn test_timer_received_in_original_window() {
    let min = 60_000;
    assert_values(
        |p| {
            p.create_timestamped([((s("hello"), 24), ts(0))])
                .window_into(WindowingStrategy::new(
                    SlidingWindows::new(Duration::from_mins(3), Duration::from_mins(1), Duration::ZERO).unwrap(),
                ))
                .par_do_stateful(TimerWindow)
        },
        vec![Window::interval(0, 3 * min), Window::interval(-min, 2 * min), Window::interval(-2 * min, min)],
    );
}

/// Java `ParDoTest.TimerTests#testEventTimeTimerAbsolute`.
#[test]
fn test_event_time_timer_absolute() {
    fn at_window_end(cx: &mut StateContext<'_, String, i64>) {
        let end = cx.window().max_timestamp();
        FOO_TIMER.set(cx, end);
    }
    assert_values(
        |p| p.create([(s("hello"), 37i64)]).par_do_stateful(three_then_42(TimeDomain::EventTime, at_window_end)),
        vec![3, 42],
    );
}

const LOOP: TimerSpec = TimerSpec::event_time("timer");
const COUNT_STATE: ValueState<i32> = ValueState::new("count");

#[derive(Clone)]
struct TimerLoop;

impl StatefulDoFn for TimerLoop {
    type Key = String;
    type Value = i32;
    type Out = i32;
    fn process(&mut self, cx: &mut StateContext<'_, String, i32>, _v: i32) {
        LOOP.set_relative(cx, Duration::from_millis(1), None);
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, i32>, _t: &TimerFiring) {
        let count = COUNT_STATE.read(cx).unwrap_or(0);
        if count < 5 {
            cx.output(count);
            COUNT_STATE.write(cx, count + 1);
            LOOP.set_relative(cx, Duration::from_millis(1), None);
        }
    }
}

/// Java `ParDoTest.TimerTests#testEventTimeTimerLoop` (`@Ignore`d upstream
/// because of runner bugs BEAM-2791 / BEAM-2535; the expected output is the
/// upstream one).
#[test]
fn test_event_time_timer_loop() {
    assert_values(|p| p.create([(s("hello"), 42)]).par_do_stateful(TimerLoop), vec![0, 1, 2, 3, 4]);
}

const SIZZLE: ValueState<String> = ValueState::new("sizzle");

#[derive(Clone)]
struct MultipleKeys;

impl StatefulDoFn for MultipleKeys {
    type Key = String;
    type Value = i64;
    type Out = (String, i64);
    fn process(&mut self, cx: &mut StateContext<'_, String, (String, i64)>, v: i64) {
        let end = cx.window().max_timestamp();
        FOO_TIMER.set(cx, end);
        let k = cx.key().clone();
        SIZZLE.write(cx, k.clone());
        cx.output((k, v + 5000));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, (String, i64)>, _t: &TimerFiring) {
        let k = SIZZLE.read(cx).unwrap_or_default();
        cx.output((k, 4093));
    }
}

/// Java `ParDoTest.TimerTests#testEventTimeTimerMultipleKeys`.
#[test]
fn test_event_time_timer_multiple_keys() {
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for key in 0..50i64 {
        expected.push((key.to_string(), 4093));
        for i in 0..15 {
            input.push((key.to_string(), i));
            expected.push((key.to_string(), i + 5000));
        }
    }
    shuffle(&mut input);
    assert_values(|p| p.create(input.clone()).par_do_stateful(MultipleKeys), expected);
}

/// Java `ParDoTest.TimerTests#testAbsoluteProcessingTimeTimerRejected`
/// (upstream checks the message for "relative timers" and "processing time").
#[test]
fn test_absolute_processing_time_timer_rejected() {
    fn absolute(cx: &mut StateContext<'_, String, i64>) {
        FOO_PT_TIMER.set(cx, ts(0));
    }
    assert_fails(
        |p| p.create([(s("hello"), 37i64)]).par_do_stateful(three_then_42(TimeDomain::ProcessingTime, absolute)),
        &["relative timers", "processing time"],
    );
}

/// Java `ParDoTest.TimerTests#testOutOfBoundsEventTimeTimer` ("timer", "expiration").
#[test]
fn test_out_of_bounds_event_time_timer() {
    fn after_window(cx: &mut StateContext<'_, String, i64>) {
        let end = cx.window().max_timestamp();
        FOO_TIMER.set(cx, end.next());
    }
    assert_fails(
        |p| p.create([(s("hello"), 37i64)]).par_do_stateful(three_then_42(TimeDomain::EventTime, after_window)),
        &["timer", "expiration"],
    );
}

/// Sets the timer at +10 with output timestamp +5; on the timer outputs its
/// timestamp in ms.
#[derive(Clone)]
struct OutputTimestampDefault;

impl StatefulDoFn for OutputTimestampDefault {
    type Key = String;
    type Value = i64;
    type Out = i64;
    fn process(&mut self, cx: &mut StateContext<'_, String, i64>, _v: i64) {
        let t = cx.timestamp();
        FOO_TIMER.set_with_output_timestamp(cx, t + Duration::from_millis(10), t + Duration::from_millis(5));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, i64>, _t: &TimerFiring) {
        let t = cx.timestamp().millis();
        cx.output(t);
    }
}

/// Java `ParDoTest.TimerTests#testOutputTimestampDefaultBounded`.
#[test]
fn test_output_timestamp_default_bounded() {
    assert_values(
        |p| p.create_timestamped([((s("hello"), 1i64), ts(3))]).par_do_stateful(OutputTimestampDefault),
        vec![8],
    );
}

/// Java `ParDoTest.TimerTests#testOutputTimestampDefaultUnbounded`.
#[test]
fn test_output_timestamp_default_unbounded() {
    let stream = TestStream::new().add_elements([((s("hello"), 1i64), ts(3))]);
    assert_values(|p| p.test_stream(stream.clone()).par_do_stateful(OutputTimestampDefault), vec![8]);
}

/// Java `ParDoTest.TimerTests#testOutOfBoundsEventTimeTimerHold` ("timer", "output timestamp").
#[test]
fn test_out_of_bounds_event_time_timer_hold() {
    fn hold_after_window(cx: &mut StateContext<'_, String, i64>) {
        let end = cx.window().max_timestamp();
        FOO_TIMER.set_with_output_timestamp(cx, end, end.next());
    }
    assert_fails(
        |p| p.create([(s("hello"), 37i64)]).par_do_stateful(three_then_42(TimeDomain::EventTime, hold_after_window)),
        &["timer", "output timestamp"],
    );
}

/// Java `ParDoTest.TimerTests#testOutOfBoundsProcessingTimeTimerHold` ("timer", "output timestamp").
#[test]
fn test_out_of_bounds_processing_time_timer_hold() {
    fn hold_after_window(cx: &mut StateContext<'_, String, i64>) {
        let end = cx.window().max_timestamp();
        FOO_PT_TIMER.set_relative_with_output_timestamp(cx, Duration::from_secs(1), None, end.next());
    }
    assert_fails(
        |p| {
            p.create([(s("hello"), 37i64)])
                .par_do_stateful(three_then_42(TimeDomain::ProcessingTime, hold_after_window))
        },
        &["timer", "output timestamp"],
    );
}

fn pt_in_one_second(cx: &mut StateContext<'_, String, i64>) {
    FOO_PT_TIMER.set_relative(cx, Duration::from_secs(1), None);
}

/// Java `ParDoTest.TimerTests#testSimpleProcessingTimerTimer`.
#[test]
fn test_simple_processing_timer_timer() {
    let stream = TestStream::new()
        .add_elements([((s("hello"), 37i64), Timestamp::MIN)])
        .advance_processing_time(Duration::from_secs(60));
    assert_values(
        |p| p.test_stream(stream.clone()).par_do_stateful(three_then_42(TimeDomain::ProcessingTime, pt_in_one_second)),
        vec![3, 42],
    );
}

/// Java `ParDoTest.TimerTests#testEventTimeTimerUnbounded`.
#[test]
fn test_event_time_timer_unbounded() {
    let stream = TestStream::new()
        .advance_watermark_to(ts(0))
        .add_elements([((s("hello"), 37i64), ts(0))])
        .advance_watermark_to(ts(1000));
    assert_values(
        |p| p.test_stream(stream.clone()).par_do_stateful(three_then_42(TimeDomain::EventTime, in_one_second)),
        vec![3, 42],
    );
}

/// Java `ParDoTest.TimerTests#testEventTimeTimerAlignUnbounded`: aligned to
/// the minute with a 1 s offset, from 5 s the timer fires at 59 s.
#[test]
fn test_event_time_timer_align_unbounded() {
    let stream = TestStream::new()
        .advance_watermark_to(ts(5_000))
        .add_elements([((s("hello"), 37i64), ts(5_000))])
        .advance_watermark_to(ts(60_000));
    let fn_ = Aligned { period: Duration::from_mins(1), offset: Duration::from_secs(1) };
    assert_values(
        |p| p.test_stream(stream.clone()).par_do_stateful(fn_.clone()),
        vec![(3, ts(5_000)), (42, ts(59_000))],
    );
}

/// Java `ParDoTest.TimerTests#testEventTimeTimerAlignAfterGcTimeUnbounded`:
/// the aligned target is clamped to the end of the global window.
#[test]
fn test_event_time_timer_align_after_gc_time_unbounded() {
    let end = Timestamp::END_OF_GLOBAL_WINDOW;
    let stream = TestStream::new().advance_watermark_to(end).add_elements([((s("hello"), 37i64), end)]);
    let fn_ = Aligned { period: Duration::from_hours(24), offset: Duration::ZERO };
    assert_values(|p| p.test_stream(stream.clone()).par_do_stateful(fn_.clone()), vec![(3, end), (42, end)]);
}

/// Outputs each element's value and, when the timer fires, "timer_output".
#[derive(Clone)]
struct ResetTimer(TimerSpec);

impl StatefulDoFn for ResetTimer {
    type Key = String;
    type Value = String;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, v: String) {
        self.0.set_relative(cx, Duration::from_secs(1), None);
        cx.output(v);
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, String>, _t: &TimerFiring) {
        cx.output(s("timer_output"));
    }
}

/// Java `ParDoTest.TimerTests#testProcessingTimeTimerCanBeReset`.
#[test]
fn test_processing_time_timer_can_be_reset() {
    let stream = TestStream::new()
        .add_elements([((s("key"), s("input1")), Timestamp::MIN)])
        .add_elements([((s("key"), s("input2")), Timestamp::MIN)])
        .advance_processing_time(Duration::from_secs(60));
    assert_values(
        |p| p.test_stream(stream.clone()).par_do_stateful(ResetTimer(FOO_PT_TIMER)),
        vec![s("input1"), s("input2"), s("timer_output")],
    );
}

/// Java `ParDoTest.TimerTests#testEventTimeTimerCanBeReset`.
#[test]
fn test_event_time_timer_can_be_reset() {
    let stream = TestStream::new()
        .advance_watermark_to(ts(0))
        .add_elements([((s("hello"), s("input1")), ts(0))])
        .add_elements([((s("hello"), s("input2")), ts(0))]);
    assert_values(
        |p| p.test_stream(stream.clone()).par_do_stateful(ResetTimer(FOO_TIMER)),
        vec![s("input1"), s("input2"), s("timer_output")],
    );
}

const APPEND: TimerSpec = TimerSpec::event_time("append");
const GC: TimerSpec = TimerSpec::event_time("gc");
const TS_BAG: BagState<(String, Timestamp)> = BagState::new("bag");
const MIN_TS: ValueState<Timestamp> = ValueState::new("minTs");

/// Upstream's `testEventTimeTimerOrderingWithInputPTransform` DoFn.
#[derive(Clone)]
struct TimerOrdering {
    n: usize,
    gc_at: Timestamp,
}

fn joined(mut vals: Vec<(String, Timestamp)>) -> String {
    vals.sort_by_key(|(_, t)| *t);
    vals.into_iter().map(|(v, _)| v).collect::<Vec<_>>().join(":")
}

impl StatefulDoFn for TimerOrdering {
    type Key = String;
    type Value = String;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, v: String) {
        let current_min = MIN_TS.read(cx).unwrap_or(Timestamp::MAX);
        if current_min == Timestamp::MAX {
            GC.set(cx, self.gc_at);
        }
        let t = cx.timestamp();
        if current_min > t {
            MIN_TS.write(cx, t);
            APPEND.set(cx, t);
        }
        TS_BAG.add(cx, (v, t));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, String>, timer: &TimerFiring) {
        if timer.family == "append" {
            let flush_time = cx.timestamp();
            let flush: Vec<_> = TS_BAG.read(cx).into_iter().filter(|(_, t)| *t <= flush_time).collect();
            let len = flush.len();
            cx.output(joined(flush));
            if len < self.n {
                APPEND.set(cx, flush_time + Duration::from_secs(1));
            }
        } else {
            let all = TS_BAG.read(cx);
            cx.output(joined(all) + ":cleanup");
            TS_BAG.clear(cx);
        }
    }
}

fn timer_ordering_expected(n: usize) -> Vec<String> {
    (0..=n)
        .map(|i| {
            let prefix: Vec<String> = (0..=i.min(n - 1)).map(|j| j.to_string()).collect();
            prefix.join(":") + if i == n { ":cleanup" } else { "" }
        })
        .collect()
}

const NOW: i64 = 1_500_000_000_000;

/// Java `ParDoTest.TimerTests#testEventTimeTimerOrdering`.
#[test]
fn test_event_time_timer_ordering() {
    let n = 100;
    let mut stream = TestStream::new().advance_watermark_to(ts(0));
    for i in 0..n as i64 {
        stream = stream.add_elements([((s("dummy"), i.to_string()), ts(NOW + i * 1000))]);
        if (i + 1) % 10 == 0 {
            stream = stream.advance_watermark_to(ts(NOW + (i + 1) * 1000));
        }
    }
    let fn_ = TimerOrdering { n, gc_at: ts(NOW + (n as i64 + 1) * 1000) };
    assert_values(|p| p.test_stream(stream.clone()).par_do_stateful(fn_.clone()), timer_ordering_expected(n));
}

/// Java `ParDoTest.TimerTests#testEventTimeTimerOrderingWithCreateBounded`.
#[test]
fn test_event_time_timer_ordering_with_create_bounded() {
    let n = 100;
    let elements: Vec<_> = (0..n as i64).map(|i| ((s("dummy"), i.to_string()), ts(NOW + i * 1000))).collect();
    let fn_ = TimerOrdering { n, gc_at: ts(NOW + (n as i64 + 1) * 1000) };
    assert_values(|p| p.create_timestamped(elements.clone()).par_do_stateful(fn_.clone()), timer_ordering_expected(n));
}

const TIMER: TimerSpec = TimerSpec::event_time("timer");

/// Upstream's `TwoTimerDoFn`: the same timer set twice.
#[derive(Clone)]
struct TwoTimerDoFn;

impl StatefulDoFn for TwoTimerDoFn {
    type Key = String;
    type Value = String;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, _v: String) {
        TIMER.set_relative(cx, Duration::from_mins(10), None);
        TIMER.set_relative(cx, Duration::from_mins(30), None);
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, String>, _t: &TimerFiring) {
        cx.output(s("It works"));
    }
}

/// Java `ParDoTest.TimerTests#duplicateTimerSetting`.
#[test]
fn duplicate_timer_setting() {
    let stream = TestStream::new().add_elements([((s("key1"), s("v1")), Timestamp::MIN)]);
    assert_values(|p| p.test_stream(stream.clone()).par_do_stateful(TwoTimerDoFn), vec![s("It works")]);
}

const T1: TimerSpec = TimerSpec::event_time("t1");
const T2: TimerSpec = TimerSpec::event_time("t2");

/// Upstream's `TwoTimerTest`: two timers setting each other.
#[derive(Clone)]
struct TwoTimers {
    start: Timestamp,
    end: Timestamp,
}

impl StatefulDoFn for TwoTimers {
    type Key = ();
    type Value = ();
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, (), String>, _v: ()) {
        COUNT_STATE.write(cx, 0);
        T1.set(cx, self.start);
        // After the end, so that timers are checked to be ordered.
        T2.set(cx, self.end.next());
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, (), String>, timer: &TimerFiring) {
        let current = COUNT_STATE.read(cx).unwrap_or(i32::MIN);
        let t = cx.timestamp();
        let since = t.millis() - self.start.millis();
        if timer.family == "t1" {
            T2.set(cx, t);
            cx.output(format!("t1:{current}:{since}"));
        } else {
            if t < self.end {
                COUNT_STATE.write(cx, current + 1);
                T1.set(cx, t.next());
            } else {
                COUNT_STATE.write(cx, -1);
            }
            cx.output(format!("t2:{current}:{since}"));
        }
    }
}

fn two_timers_expected() -> Vec<String> {
    (0..=100).flat_map(|e| [format!("t1:{e}:{e}"), format!("t2:{e}:{e}")]).collect()
}

/// Java `ParDoTest.TimerTests#testTwoTimersSettingEachOther`.
#[test]
fn test_two_timers_setting_each_other() {
    let fn_ = TwoTimers { start: ts(NOW), end: ts(NOW + 100) };
    let stream = TestStream::new().add_elements([(((), ()), Timestamp::MIN)]);
    assert_values(|p| p.test_stream(stream.clone()).par_do_stateful(fn_.clone()), two_timers_expected());
}

/// Java `ParDoTest.TimerTests#testTwoTimersSettingEachOtherWithCreateAsInputBounded`.
#[test]
fn test_two_timers_setting_each_other_with_create_as_input_bounded() {
    let fn_ = TwoTimers { start: ts(NOW), end: ts(NOW + 100) };
    assert_values(|p| p.create([((), ())]).par_do_stateful(fn_.clone()), two_timers_expected());
}

const BAR: TimerSpec = TimerSpec::event_time("bar");
const BAR_PT: TimerSpec = TimerSpec::processing_time("bar");
const TIMER_FIRED: ValueState<bool> = ValueState::new("timerFired");

/// Upstream's first DoFn of testOutputTimestamp(WithProcessingTime): a timer
/// whose output timestamp holds the watermark; outputs `("foo", 100)`.
#[derive(Clone)]
struct HoldingTimer {
    processing_time: bool,
}

impl StatefulDoFn for HoldingTimer {
    type Key = String;
    type Value = i64;
    type Out = (String, i64);
    fn process(&mut self, cx: &mut StateContext<'_, String, (String, i64)>, _v: i64) {
        let t = cx.timestamp();
        if self.processing_time {
            BAR_PT.set_relative_with_output_timestamp(cx, Duration::from_secs(10), None, t + Duration::from_secs(5));
        } else {
            BAR.set_with_output_timestamp(cx, t + Duration::from_millis(10), t + Duration::from_millis(5));
        }
        cx.output((s("foo"), 100));
    }
}

/// Upstream's second DoFn: sets a timer (at `timestamp + 8`, or at 8) that
/// must not fire before the first DoFn's hold is released.
#[derive(Clone)]
struct HeldTimer {
    absolute: bool,
}

impl StatefulDoFn for HeldTimer {
    type Key = String;
    type Value = i64;
    type Out = i64;
    fn process(&mut self, cx: &mut StateContext<'_, String, i64>, _v: i64) {
        let fired = TIMER_FIRED.read(cx).unwrap_or(false);
        check!(cx, !fired, "the timer fired before the upstream hold was released");
        let target = if self.absolute { ts(8) } else { cx.timestamp() + Duration::from_millis(8) };
        BAR.set(cx, target);
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, i64>, _t: &TimerFiring) {
        TIMER_FIRED.write(cx, true);
        cx.output(100);
    }
}

/// Java `ParDoTest.TimerTests#testOutputTimestamp`.
#[test]
fn test_output_timestamp() {
    let stream = TestStream::new()
        .advance_watermark_to(ts(0))
        .add_elements([((s("key"), 1i64), ts(0))])
        .advance_watermark_to(ts(9))
        .add_elements([((s("key"), 1i64), ts(9))]);
    assert_values(
        |p| {
            p.test_stream(stream.clone())
                .par_do_stateful(HoldingTimer { processing_time: false })
                .par_do_stateful(HeldTimer { absolute: false })
        },
        vec![100],
    );
}

/// Java `ParDoTest.TimerTests#testOutputTimestampWithProcessingTime`.
#[test]
fn test_output_timestamp_with_processing_time() {
    let stream = TestStream::new()
        .advance_processing_time(Duration::from_secs(1))
        .add_elements([((s("key"), 1i64), Timestamp::MIN)])
        .advance_processing_time(Duration::from_secs(9))
        .advance_watermark_to(ts(11))
        .add_elements([((s("key"), 1i64), ts(11))])
        .advance_processing_time(Duration::from_secs(100));
    assert_values(
        |p| {
            p.test_stream(stream.clone())
                .par_do_stateful(HoldingTimer { processing_time: true })
                .par_do_stateful(HeldTimer { absolute: true })
        },
        vec![100],
    );
}

// ---------------------------------------------------------------------------
// ParDoTest.TimerFamilyTests, KeyTests, OnWindowExpirationTests
// ---------------------------------------------------------------------------

const FAMILY_FOO: TimerSpec = TimerSpec::event_time("foo");
const FAMILY_BAR: TimerSpec = TimerSpec::event_time("bar");

/// The three timer-family DoFns of upstream, by `variant`.
#[derive(Clone)]
struct Families {
    variant: u8,
}

impl StatefulDoFn for Families {
    type Key = String;
    type Value = i32;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, _v: i32) {
        match self.variant {
            // testTimerFamilyEventTime: two timers of one family.
            0 => {
                FAMILY_FOO.set_tagged(cx, "timer1", ts(1));
                FAMILY_FOO.set_tagged(cx, "timer2", ts(2));
            }
            // testTimerWithMultipleTimerFamily: one tag in two families.
            1 => {
                FAMILY_FOO.set_tagged(cx, "timer", ts(1));
                FAMILY_BAR.set_tagged(cx, "timer", ts(2));
            }
            // testTimerFamilyAndTimer: a family and a plain timer "timer".
            _ => {
                FAMILY_FOO.set_tagged(cx, "timer", ts(1));
                TIMER.set(cx, ts(2));
            }
        }
        cx.output(s("process"));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, String>, t: &TimerFiring) {
        let out = if self.variant == 2 && t.family == "foo" {
            format!("family:{}:{}", t.family, t.tag)
        } else if t.tag.is_empty() {
            t.family.to_string()
        } else {
            t.tag.clone()
        };
        cx.output(out);
    }
}

/// Java `ParDoTest.TimerFamilyTests#testTimerFamilyEventTimeBounded`.
#[test]
fn test_timer_family_event_time_bounded() {
    assert_values(
        |p| p.create([(s("hello"), 37)]).par_do_stateful(Families { variant: 0 }),
        vec![s("process"), s("timer1"), s("timer2")],
    );
}

/// Java `ParDoTest.TimerFamilyTests#testTimerFamilyEventTimeUnbounded`.
#[test]
fn test_timer_family_event_time_unbounded() {
    let stream = TestStream::new().add_elements([((s("hello"), 37), Timestamp::MIN)]);
    assert_values(
        |p| p.test_stream(stream.clone()).par_do_stateful(Families { variant: 0 }),
        vec![s("process"), s("timer1"), s("timer2")],
    );
}

/// Java `ParDoTest.TimerFamilyTests#testTimerWithMultipleTimerFamilyBounded`.
#[test]
fn test_timer_with_multiple_timer_family() {
    assert_values(
        |p| p.create([(s("hello"), 37)]).par_do_stateful(Families { variant: 1 }),
        vec![s("process"), s("timer"), s("timer")],
    );
}

/// Java `ParDoTest.TimerFamilyTests#testTimerFamilyAndTimerBounded`.
#[test]
fn test_timer_family_and_timer() {
    assert_values(
        |p| p.create([(s("hello"), 37)]).par_do_stateful(Families { variant: 2 }),
        vec![s("process"), s("family:foo:timer"), s("timer")],
    );
}

/// Java `ParDoTest.TimerFamilyTests#testTimerFamilyProcessingTime`.
#[test]
fn test_timer_family_processing_time() {
    fn family_in_one_second(cx: &mut StateContext<'_, String, i64>) {
        FOO_PT_TIMER.set_relative_tagged(cx, "timerId1", Duration::from_secs(1), None);
    }
    let stream = TestStream::new()
        .add_elements([((s("hello"), 37i64), Timestamp::MIN)])
        .advance_processing_time(Duration::from_secs(2));
    assert_values(
        |p| {
            p.test_stream(stream.clone())
                .par_do_stateful(three_then_42(TimeDomain::ProcessingTime, family_in_one_second))
        },
        vec![3, 42],
    );
}

/// Sets a timer at 1; on it outputs the key parsed as a number.
#[derive(Clone)]
struct KeyInOnTimer<K>(fn(&K) -> i32);

impl<K: Key> StatefulDoFn for KeyInOnTimer<K> {
    type Key = K;
    type Value = i32;
    type Out = i32;
    fn process(&mut self, cx: &mut StateContext<'_, K, i32>, _v: i32) {
        FOO_TIMER.set(cx, ts(1));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, K, i32>, _t: &TimerFiring) {
        let k = (self.0)(cx.key());
        cx.output(k);
    }
}

/// Java `ParDoTest.KeyTests#testKeyInOnTimer`.
#[test]
fn test_key_in_on_timer() {
    assert_values(
        |p| p.create([(s("1"), 37), (s("2"), 3)]).par_do_stateful(KeyInOnTimer(|k: &String| k.parse().unwrap())),
        vec![1, 2],
    );
}

/// Java `ParDoTest.KeyTests#testKeyInOnTimerWithGenericKey`.
#[test]
fn test_key_in_on_timer_with_generic_key() {
    assert_values(
        |p| {
            p.create([((s("1"), s("1")), 37), ((s("1"), s("1")), 3)])
                .par_do_stateful(KeyInOnTimer(|k: &(String, String)| k.0.parse().unwrap()))
        },
        vec![1],
    );
}

const BAR_TIMER: TimerSpec = TimerSpec::event_time("bar");

/// Upstream's `runOnWindowExpirationSimple` DoFn.
#[derive(Clone)]
struct ExpirationSimple;

impl StatefulDoFn for ExpirationSimple {
    type Key = String;
    type Value = i32;
    type Out = i32;
    fn process(&mut self, cx: &mut StateContext<'_, String, i32>, _v: i32) {
        BAR_TIMER.set(cx, ts(1));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, i32>, _t: &TimerFiring) {
        let current = FOO_INT.read(cx).unwrap_or(0);
        FOO_INT.write(cx, current + 1);
    }
    fn on_window_expiration(&mut self, cx: &mut StateContext<'_, String, i32>) {
        let current = FOO_INT.read(cx).unwrap_or(0);
        check!(cx, current == 1, "state at expiration is {current}, not 1");
        cx.output(current);
    }
}

fn check_expiration_simple(build: impl Fn(&Pipeline) -> PCollection<i32>) {
    for (name, got) in outputs(build) {
        let mut got: Vec<(Window, i32)> = got.into_iter().map(|v| (v.window, v.value)).collect();
        got.sort();
        assert_eq!(got, vec![(Window::interval(0, 10), 1), (Window::interval(10, 20), 1)], "{name}");
    }
}

/// Java `ParDoTest.OnWindowExpirationTests#testOnWindowExpirationSimpleBounded`
/// (the timer at 1 is in the past for the window [10, 20): it fires at once).
#[test]
fn test_on_window_expiration_simple_bounded() {
    check_expiration_simple(|p| {
        p.create_timestamped([((s("hello"), 7), ts(3)), ((s("hi"), 35), ts(13))])
            .window_into(fixed(10))
            .par_do_stateful(ExpirationSimple)
    });
}

/// Java `ParDoTest.OnWindowExpirationTests#testOnWindowExpirationSimpleUnbounded`.
#[test]
fn test_on_window_expiration_simple_unbounded() {
    let stream = TestStream::new().add_elements([((s("hello"), 7), ts(3)), ((s("hi"), 35), ts(13))]);
    check_expiration_simple(|p| p.test_stream(stream.clone()).window_into(fixed(10)).par_do_stateful(ExpirationSimple));
}

// ---------------------------------------------------------------------------
// Python userstate_test.StatefulDoFnOnDirectRunnerTest
// ---------------------------------------------------------------------------

fn mykey<T: Data>(stream: &TestStream<T>) -> TestStream<(String, T)> {
    let mut out = TestStream::new();
    for e in stream.events() {
        out = match e {
            TestEvent::Elements(items) => out.add_elements(items.iter().map(|(v, t)| ((s("mykey"), v.clone()), *t))),
            TestEvent::Watermark(t) => out.advance_watermark_to(*t),
            TestEvent::ProcessingTime(d) => out.advance_processing_time(*d),
            TestEvent::ProcessingTimeTo(t) => out.advance_processing_time_to(*t),
        };
    }
    out
}

/// wm 10; [1, 2]; [3]; wm 25; [4] (each at the watermark).
fn one_to_four() -> TestStream<(String, i32)> {
    mykey(
        &TestStream::new()
            .advance_watermark_to(ts(10))
            .add_elements([(1, ts(10)), (2, ts(10))])
            .add_elements([(3, ts(10))])
            .advance_watermark_to(ts(25))
            .add_elements([(4, ts(25))]),
    )
}

const BUFFER_STR: BagState<String> = BagState::new("buffer");
const EXPIRY: TimerSpec = TimerSpec::event_time("expiry");

#[derive(Clone)]
struct SimpleTestStatefulDoFn;

impl StatefulDoFn for SimpleTestStatefulDoFn {
    type Key = String;
    type Value = i32;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, v: i32) {
        BUFFER_STR.add(cx, format!("A{v}"));
        EXPIRY.set(cx, ts(20));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, String>, _t: &TimerFiring) {
        let mut all = BUFFER_STR.read(cx);
        all.sort();
        cx.output(all.concat());
    }
}

/// Python `test_simple_stateful_dofn`: the timer fires once the watermark
/// passes 20, and again at once for an element after that (set in the past).
#[test]
fn test_simple_stateful_dofn() {
    assert_values(
        |p| p.test_stream(one_to_four()).par_do_stateful(SimpleTestStatefulDoFn),
        vec![s("A1A2A3"), s("A1A2A3A4")],
    );
}

const EMIT: TimerSpec = TimerSpec::event_time("emit_timer");
const CLEAR: TimerSpec = TimerSpec::event_time("clear_timer");
const SET_STR: SetState<String> = SetState::new("buffer");

/// Python's `BagStateClearingStatefulDoFn` (`set: false`) and
/// `SetStateClearingStatefulDoFn` (`set: true`).
#[derive(Clone)]
struct Clearing {
    set: bool,
}

impl StatefulDoFn for Clearing {
    type Key = String;
    type Value = String;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, v: String) {
        if self.set {
            SET_STR.add(cx, v);
        } else {
            BUFFER_STR.add(cx, v);
        }
        CLEAR.set(cx, ts(100));
        EMIT.set(cx, ts(1000));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, String>, t: &TimerFiring) {
        match (t.family, self.set) {
            ("emit_timer", false) => {
                for v in BUFFER_STR.read(cx) {
                    cx.output(v);
                }
                cx.output(s("extra"));
            }
            ("emit_timer", true) => {
                for v in SET_STR.read(cx) {
                    cx.output(v);
                }
            }
            (_, false) => BUFFER_STR.clear(cx),
            (_, true) => {
                SET_STR.clear(cx);
                SET_STR.add(cx, s("different-value"));
            }
        }
    }
}

fn clearing_stream(key: &str, value: &str) -> TestStream<(String, String)> {
    TestStream::new()
        .advance_watermark_to(ts(0))
        .add_elements([((s(key), s(value)), ts(0))])
        .advance_watermark_to(ts(100))
}

/// Python `test_clearing_bag_state`.
#[test]
fn test_clearing_bag_state() {
    let stream = clearing_stream("key", "value");
    assert_values(|p| p.test_stream(stream.clone()).par_do_stateful(Clearing { set: false }), vec![s("extra")]);
}

/// Python `test_clearing_set_state`.
#[test]
fn test_clearing_set_state() {
    let stream = clearing_stream("key1", "value1");
    assert_values(
        |p| p.test_stream(stream.clone()).par_do_stateful(Clearing { set: true }),
        vec![s("different-value")],
    );
}

#[derive(Clone)]
struct SimpleTestSetStatefulDoFn;

impl StatefulDoFn for SimpleTestSetStatefulDoFn {
    type Key = String;
    type Value = i32;
    type Out = Vec<i32>;
    fn process(&mut self, cx: &mut StateContext<'_, String, Vec<i32>>, v: i32) {
        SET_INT.add(cx, v);
        EXPIRY.set(cx, ts(20));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, Vec<i32>>, _t: &TimerFiring) {
        let all = SET_INT.read(cx);
        cx.output(all);
    }
}

/// Python `test_simple_set_stateful_dofn`.
#[test]
fn test_simple_set_stateful_dofn() {
    let stream = mykey(
        &TestStream::new()
            .advance_watermark_to(ts(10))
            .add_elements([(1, ts(10)), (2, ts(10)), (3, ts(10))])
            .add_elements([(2, ts(10))])
            .advance_watermark_to(ts(24)),
    );
    assert_values(|p| p.test_stream(stream.clone()).par_do_stateful(SimpleTestSetStatefulDoFn), vec![vec![1, 2, 3]]);
}

#[derive(Clone)]
struct SetStatefulDoFn;

impl StatefulDoFn for SetStatefulDoFn {
    type Key = String;
    type Value = i32;
    type Out = i32;
    fn process(&mut self, cx: &mut StateContext<'_, String, i32>, v: i32) {
        SET_INT.add(cx, v);
        let sum = SET_INT.read(cx).into_iter().sum();
        cx.output(sum);
    }
}

/// Python `test_stateful_set_state_portably`. Upstream relies on
/// `Create(..., reshuffle=False)` keeping the order of the elements; a Weir
/// `create` is split over the workers, so the port plays them in order from
/// one TestStream (one element per step), which keeps the order on every
/// runner.
#[test]
fn test_stateful_set_state_portably() {
    let mut stream = TestStream::new();
    for v in [1, 2, 3, 4, 3] {
        stream = stream.add_elements([((s("key"), v), Timestamp::MIN)]);
    }
    assert_values(|p| p.test_stream(stream.clone()).par_do_stateful(SetStatefulDoFn), vec![1, 3, 6, 10, 10]);
}

/// Python's `SetStateClearingStatefulDoFn` of the two "portably" tests:
/// `clear_at_five` clears and adds 100 once the set has 5 elements;
/// otherwise every element is also output.
#[derive(Clone)]
struct SetClearingAtFive {
    clear_at_five: bool,
}

impl StatefulDoFn for SetClearingAtFive {
    type Key = String;
    type Value = i32;
    type Out = (String, i32);
    fn process(&mut self, cx: &mut StateContext<'_, String, (String, i32)>, v: i32) {
        SET_INT.add(cx, v);
        if SET_INT.read(cx).len() == 5 {
            if self.clear_at_five {
                SET_INT.clear(cx);
                SET_INT.add(cx, 100);
            }
            EMIT.set(cx, ts(1));
        }
        if !self.clear_at_five {
            let k = cx.key().clone();
            cx.output((k, v));
        }
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, (String, i32)>, _t: &TimerFiring) {
        for v in SET_INT.read(cx) {
            cx.output((s("key"), v));
        }
    }
}

fn five_at_one(p: &Pipeline) -> PCollection<(String, i32)> {
    p.create_timestamped([1, 2, 3, 4, 5].map(|v| ((s("key"), v), ts(1)))).window_into(fixed(1))
}

/// Python `test_stateful_set_state_clean_portably` (the timer outputs the
/// sorted set as one list; here its elements are gathered per window).
#[test]
fn test_stateful_set_state_clean_portably() {
    for (name, got) in outputs(|p| five_at_one(p).par_do_stateful(SetClearingAtFive { clear_at_five: true })) {
        let got: Vec<(Window, i32)> = got.into_iter().map(|v| (v.window, v.value.1)).collect();
        assert_eq!(got, vec![(Window::interval(1, 2), 100)], "{name}");
    }
}

/// Python `test_stateful_sum_then_gbk`.
#[test]
fn test_stateful_sum_then_gbk() {
    assert_values(
        |p| {
            five_at_one(p).par_do_stateful(SetClearingAtFive { clear_at_five: false }).group_by_key().map(
                |(k, mut vs)| {
                    vs.sort();
                    (k, vs)
                },
            )
        },
        vec![(s("key"), vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5])],
    );
}

/// Python's `ToListCombineFn`.
#[derive(Clone)]
struct ToList;

impl CombineFn<i32> for ToList {
    type Acc = Vec<i32>;
    type Out = Vec<i32>;
    fn create_accumulator(&self) -> Vec<i32> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<i32>, v: i32) {
        acc.push(v);
    }
    fn merge_accumulators(&self, acc: &mut Vec<i32>, other: Vec<i32>) {
        acc.extend(other);
    }
    fn extract_output(&self, acc: &Vec<i32>) -> Vec<i32> {
        acc.clone()
    }
}

const TO_LIST: CombiningState<i32, ToList> = CombiningState::new("buffer", ToList);
const EXPIRY1: TimerSpec = TimerSpec::event_time("expiry1");

#[derive(Clone)]
struct CombiningToList;

impl StatefulDoFn for CombiningToList {
    type Key = String;
    type Value = i32;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, v: i32) {
        TO_LIST.add(cx, v);
        EXPIRY1.set(cx, ts(20));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, String>, _t: &TimerFiring) {
        let mut all = TO_LIST.read(cx);
        all.sort();
        cx.output(all.iter().map(|v| v.to_string()).collect());
    }
}

/// Python `test_simple_stateful_dofn_combining`.
#[test]
fn test_simple_stateful_dofn_combining() {
    assert_values(|p| p.test_stream(one_to_four()).par_do_stateful(CombiningToList), vec![s("123"), s("1234")]);
}

const EMIT1: TimerSpec = TimerSpec::event_time("emit1");
const EMIT2: TimerSpec = TimerSpec::event_time("emit2");
const EMIT3: TimerSpec = TimerSpec::event_time("emit3");

/// Python's `TimerEmittingStatefulDoFn` (three timers) followed by
/// `TimestampReifyingDoFn`; with `windowed`, the one-timer variant that
/// also outputs the key and window.
#[derive(Clone)]
struct TimerEmitting {
    windowed: bool,
}

impl StatefulDoFn for TimerEmitting {
    type Key = String;
    type Value = i32;
    type Out = (String, i64, i64, i64);
    fn process(&mut self, cx: &mut StateContext<'_, String, Self::Out>, _v: i32) {
        EMIT1.set(cx, ts(10));
        if !self.windowed {
            EMIT2.set(cx, ts(20));
            EMIT3.set(cx, ts(30));
        }
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, Self::Out>, t: &TimerFiring) {
        let (w, at) = (cx.window(), cx.timestamp().millis());
        let name = format!("timer{}", &t.family[4..]);
        if self.windowed {
            let key = cx.key().clone();
            cx.output((format!("{name}-{key}"), at, w.start().millis(), w.max_timestamp().next().millis()));
        } else {
            cx.output((name, at, 0, 0));
        }
    }
}

fn one_at_ten() -> TestStream<(String, i32)> {
    mykey(&TestStream::new().advance_watermark_to(ts(10)).add_elements([(1, ts(10))]))
}

/// Python `test_timer_output_timestamp`.
#[test]
fn test_timer_output_timestamp() {
    for (name, got) in outputs(|p| p.test_stream(one_at_ten()).par_do_stateful(TimerEmitting { windowed: false })) {
        let mut got: Vec<(String, i64)> = got.into_iter().map(|v| (v.value.0, v.timestamp.millis())).collect();
        got.sort();
        assert_eq!(got, vec![(s("timer1"), 10), (s("timer2"), 20), (s("timer3"), 30)], "{name}");
    }
}

/// Python `test_timer_output_timestamp_and_window`.
#[test]
fn test_timer_output_timestamp_and_window() {
    assert_values(
        |p| p.test_stream(one_at_ten()).window_into(fixed(5)).par_do_stateful(TimerEmitting { windowed: true }),
        vec![(s("timer1-mykey"), 10, 10, 15)],
    );
}

const INDEX: CombiningState<i64, Sum<i64>> = CombiningState::new("index", Sum::new_const());

#[derive(Clone)]
struct IndexAssigning;

impl StatefulDoFn for IndexAssigning {
    type Key = String;
    type Value = String;
    type Out = (String, i64);
    fn process(&mut self, cx: &mut StateContext<'_, String, (String, i64)>, v: String) {
        let current = INDEX.read(cx);
        cx.output((v, current));
        INDEX.add(cx, 1);
    }
}

/// Python `test_index_assignment`.
#[test]
fn test_index_assignment() {
    let stream = mykey(
        &TestStream::new()
            .advance_watermark_to(ts(10))
            .add_elements([(s("A"), ts(10)), (s("B"), ts(10))])
            .add_elements([(s("C"), ts(10))])
            .advance_watermark_to(ts(25))
            .add_elements([(s("D"), ts(25))]),
    );
    assert_values(
        |p| p.test_stream(stream.clone()).par_do_stateful(IndexAssigning),
        vec![(s("A"), 0), (s("B"), 1), (s("C"), 2), (s("D"), 3)],
    );
}

const JOIN_BUFFER: BagState<String> = BagState::new("buffer");
const UNMATCHED: TimerSpec = TimerSpec::event_time("unmatched");

#[derive(Clone)]
struct HashJoin;

impl StatefulDoFn for HashJoin {
    type Key = String;
    type Value = String;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, v: String) {
        let existing = JOIN_BUFFER.read(cx);
        if existing.is_empty() {
            JOIN_BUFFER.add(cx, v);
            UNMATCHED.set(cx, ts(100));
        } else {
            let key = cx.key().clone();
            cx.output(format!("Record<{key},{},{v}>", existing[0]));
            JOIN_BUFFER.clear(cx);
            UNMATCHED.clear(cx);
        }
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, String>, _t: &TimerFiring) {
        let buffered = JOIN_BUFFER.read(cx);
        check!(cx, buffered.len() == 1, "buffered {buffered:?}");
        JOIN_BUFFER.clear(cx);
        cx.output(format!("Unmatched<{}>", buffered[0]));
    }
}

/// Python `test_hash_join`.
#[test]
fn test_hash_join() {
    let kv = |k: &str, v: &str, t: i64| ((s(k), s(v)), ts(t));
    let stream = TestStream::new()
        .advance_watermark_to(ts(10))
        .add_elements([kv("A", "a", 10), kv("B", "b", 10)])
        .add_elements([kv("A", "aa", 10), kv("C", "c", 10)])
        .advance_watermark_to(ts(25))
        .add_elements([kv("A", "aaa", 25), kv("B", "bb", 25)])
        .add_elements([kv("D", "d", 25), kv("D", "dd", 25), kv("D", "ddd", 25), kv("D", "dddd", 25)])
        .advance_watermark_to(ts(125))
        .add_elements([kv("C", "cc", 125)]);
    assert_values(
        |p| p.test_stream(stream.clone()).par_do_stateful(HashJoin),
        [
            "Record<A,a,aa>",
            "Record<B,b,bb>",
            "Record<D,d,dd>",
            "Record<D,ddd,dddd>",
            "Unmatched<aaa>",
            "Unmatched<c>",
            "Unmatched<cc>",
        ]
        .map(s)
        .to_vec(),
    );
}

// ---------------------------------------------------------------------------
// ParDoTest.StateTests: @RequiresTimeSortedInput
// ---------------------------------------------------------------------------

const LAST: ValueState<i64> = ValueState::new("last");

/// Upstream's `timeSortedDoFn`: outputs each element minus the previous one.
#[derive(Clone)]
struct TimeSorted;

impl StatefulDoFn for TimeSorted {
    type Key = String;
    type Value = i64;
    type Out = i64;
    fn process(&mut self, cx: &mut StateContext<'_, String, i64>, v: i64) {
        let last = LAST.read(cx).unwrap_or(v - 1);
        LAST.write(cx, v);
        cx.output(v - last);
    }
    fn requires_time_sorted_input(&self) -> bool {
        true
    }
}

/// 1000, 999, …, 1: "long enough to rule out random shuffle in sorted order".
fn descending() -> Vec<i64> {
    (0..1000).map(|i| 1000 - i).collect()
}

/// Upstream's `testTimeSortedInputAlreadyHavingStamps`.
fn time_sorted(input: PCollection<i64>) -> PCollection<i64> {
    input.map(|e| (String::new(), e)).par_do_stateful(TimeSorted)
}

/// Every output is 1 and there are exactly `n`.
fn assert_all_ones(build: impl Fn(&Pipeline) -> PCollection<i64>, n: usize) {
    for (name, got) in outputs(build) {
        assert_eq!(got.len(), n, "{name}");
        assert!(got.iter().all(|v| v.value == 1), "{name}: not all ones: elements were not sorted");
    }
}

/// Java `ParDoTest.StateTests#testRequiresTimeSortedInput`.
#[test]
fn test_requires_time_sorted_input() {
    assert_all_ones(|p| time_sorted(p.create(descending()).with_timestamps(|e| ts(*e))), 1000);
}

/// Java `ParDoTest.StateTests#testRequiresTimeSortedInputWithTestStream`.
#[test]
fn test_requires_time_sorted_input_with_test_stream() {
    let mut stream = TestStream::new();
    for e in descending() {
        stream = stream.add_elements([(e, Timestamp::MIN)]);
    }
    assert_all_ones(|p| time_sorted(p.test_stream(stream.clone()).with_timestamps(|e| ts(*e))), 1000);
}

/// Each element at its own timestamp; the watermark moves to 100 when 100
/// elements remain (99, …, 1), which are then late.
fn with_late_data() -> TestStream<i64> {
    let mut stream = TestStream::new();
    for e in descending() {
        stream = stream.add_elements([(e, ts(e))]);
        if e == 100 {
            stream = stream.advance_watermark_to(ts(100));
        }
    }
    stream
}

/// Java `ParDoTest.StateTests#testRequiresTimeSortedInputWithLateDataAndAllowedLateness`:
/// with 5 s of allowed lateness the late elements are still sorted in.
#[test]
fn test_requires_time_sorted_input_with_late_data_and_allowed_lateness() {
    assert_all_ones(
        |p| {
            time_sorted(
                p.test_stream(with_late_data())
                    .window_into(WindowingStrategy::new(GlobalWindows).allowed_lateness(Duration::from_millis(5000))),
            )
        },
        1000,
    );
}

/// Upstream's bounds for the late-data tests: between 900 and 999 outputs
/// ("which data gets dropped is runner dependent"). Weir drops exactly the
/// 99 elements behind the watermark (99, …, 1): 901 remain (100 is on time).
fn assert_late_data_dropped(build: impl Fn(&Pipeline) -> PCollection<i64>, first_then_zeros: bool) {
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let out = build(&p).collect();
        let result = p.run_with(&*runner()).unwrap();
        let got = out.values();
        assert!((900..=999).contains(&got.len()), "{name}: {} outputs", got.len());
        assert_eq!(got.len(), 901, "{name}");
        let ones = got.iter().filter(|v| **v == 1).count();
        if first_then_zeros {
            // The second sorted ParDo sees 1, 1, …: its first output is 1, then 0s.
            assert_eq!((ones, got.iter().filter(|v| **v == 0).count()), (1, 900), "{name}");
        } else {
            assert_eq!(ones, 901, "{name}");
        }
        let dropped: u64 = result
            .counters("StatefulParDo")
            .iter()
            .chain(result.counters("StatefulParDo#2").iter())
            .map(|c| c.dropped_expired)
            .sum();
        assert_eq!(dropped, 99, "{name}");
    }
}

/// Java `ParDoTest.StateTests#testRequiresTimeSortedInputWithLateData`.
#[test]
fn test_requires_time_sorted_input_with_late_data() {
    assert_late_data_dropped(|p| time_sorted(p.test_stream(with_late_data())), false);
}

/// Java `ParDoTest.StateTests#testTwoRequiresTimeSortedInputWithLateData`:
/// the first sorted ParDo's outputs are not late for the second (its buffer
/// holds the watermark), so the second drops nothing more.
#[test]
fn test_two_requires_time_sorted_input_with_late_data() {
    assert_late_data_dropped(|p| time_sorted(time_sorted(p.test_stream(with_late_data()))), true);
}
