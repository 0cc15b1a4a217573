//! Batched requests to a slow external service: requests are buffered per
//! shard and sent as one call when 3 are waiting, or when a processing-time
//! timer fires 1 s after the first one was buffered, so no request waits
//! long when traffic is light. Bag and value state and a processing-time
//! timer; processing time is simulated by the TestStream.
//!
//! Run: `cargo run --release -p weir --example batched_requests`

use weir::prelude::*;

/// Requests per call.
const BATCH: usize = 3;
/// Longest wait of a buffered request (processing time).
const MAX_WAIT: Duration = Duration::from_secs(1);

/// The slow service: one call answers a batch of queries.
pub fn call_service(queries: &[String]) -> Vec<String> {
    queries.iter().map(|q| q.to_uppercase()).collect()
}

/// Buffers requests per shard and calls the service in batches.
#[derive(Clone)]
pub struct Batcher;

const BUFFER: BagState<String> = BagState::new("buffer");
const CALLS: ValueState<u32> = ValueState::new("calls");
const FLUSH: TimerSpec = TimerSpec::processing_time("flush");

fn send(cx: &mut StateContext<'_, u32, String>, why: &str) {
    let queries = BUFFER.read(cx);
    BUFFER.clear(cx);
    let n = CALLS.read(cx).unwrap_or(0) + 1;
    CALLS.write(cx, n);
    let answers = call_service(&queries);
    let line = format!("shard {} call {n} ({why}): {queries:?} -> {answers:?}", cx.key());
    cx.output(line);
}

impl StatefulDoFn for Batcher {
    type Key = u32;
    type Value = String;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, u32, String>, query: String) {
        if BUFFER.is_empty(cx) {
            FLUSH.set_relative(cx, MAX_WAIT, None);
        }
        BUFFER.add(cx, query);
        if BUFFER.read(cx).len() >= BATCH {
            FLUSH.clear(cx);
            send(cx, "full");
        }
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, u32, String>, _timer: &TimerFiring) {
        send(cx, "timer");
    }
}

/// Requests (shard, query), with processing time moving between them.
pub fn requests() -> TestStream<(u32, String)> {
    let r = |shard: u32, q: &str| ((shard, q.to_string()), Timestamp::from_millis(0));
    TestStream::new()
        .add_elements([r(0, "q1"), r(1, "q5"), r(0, "q2")])
        .advance_processing_time(Duration::from_millis(500))
        .add_elements([r(0, "q3"), r(1, "q6")]) // shard 0 is full
        .advance_processing_time(Duration::from_millis(700)) // 1.2 s: shard 1 waited long enough
        .add_elements([r(0, "q4")])
        .add_elements([r(1, "q7"), r(1, "q8"), r(1, "q9")]) // shard 1 is full
        .advance_processing_time(Duration::from_secs(2)) // 3.2 s: shard 0's q4 waited long enough
}

/// The pipeline: one line per call to the service.
pub fn build(p: &Pipeline) -> PCollection<String> {
    p.test_stream(requests()).par_do_stateful(Batcher)
}

#[allow(dead_code)] // the tests include this file for `build`
fn main() -> Result<(), PipelineError> {
    let p = Pipeline::new();
    let calls = build(&p).collect();
    p.run()?;
    let mut lines = calls.values();
    lines.sort();
    println!("calls to the service:");
    for l in lines {
        println!("  {l}");
    }
    Ok(())
}
