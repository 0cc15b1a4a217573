//! The NEXMark queries, written with Weir's public pipeline API only.
//!
//! Each query takes the event stream and returns its result rows; the doc
//! comment of each says which parts of the Beam model it exercises. The
//! queries with reference results (`../shared/nexmark/README.md`: q0–q5, q7,
//! q8, q11) follow the reference SQL as run on Flink 2.3; the others follow
//! the published definitions of the Flink NEXMark suite (q9, q12–q22),
//! expressed the way a Weir user would write them.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use weir_model::{Duration, FixedWindows, Sessions, SlidingWindows, Timestamp, Trigger, Window, WindowingStrategy};
use weir_pipeline::prelude::*;
use weir_pipeline::{DoFn, ProcessContext, SideInput, SideInputExt, SideParDoExt};

use crate::csv::{CsvOutput, CsvRow, CsvSinkExt, Milli};
use crate::model::{Auction, Bid, Event, Person, Str};

/// The bids of the event stream.
pub fn bids(events: &PCollection<Event>) -> PCollection<Bid> {
    events.flat_map(Event::into_bid).named("Bids")
}

/// The auctions of the event stream.
pub fn auctions(events: &PCollection<Event>) -> PCollection<Auction> {
    events.flat_map(Event::into_auction).named("Auctions")
}

/// The people of the event stream.
pub fn people(events: &PCollection<Event>) -> PCollection<Person> {
    events.flat_map(Event::into_person).named("People")
}

fn strategy(w: impl Into<weir_model::AnyWindowFn>) -> WindowingStrategy {
    WindowingStrategy::new(w)
}

/// A `DoFn` from a function of the element and its window (for rows that
/// carry window bounds).
#[derive(Clone)]
pub struct WithWindow<I, O> {
    f: fn(&I, Window, &mut dyn FnMut(O)),
}

impl<I: Data, O: Data> DoFn for WithWindow<I, O> {
    type In = I;
    type Out = O;
    fn process(&mut self, cx: &mut ProcessContext<'_, I, O>) {
        let w = cx.window();
        let mut outs = Vec::new();
        (self.f)(cx.element(), w, &mut |o| outs.push(o));
        for o in outs {
            cx.output(o);
        }
    }
}

fn with_window<I: Data, O: Data>(c: &PCollection<I>, f: fn(&I, Window, &mut dyn FnMut(O))) -> PCollection<O> {
    c.par_do(WithWindow { f })
}

fn window_end(w: Window) -> i64 {
    w.as_interval().map_or(i64::MAX, |i| i.end.millis())
}

// ---------------------------------------------------------------------------
// q0–q2: element-wise.

/// Row of q0: auction, bidder, price, dateTime, extra.
pub type BidRow = (u64, u64, u64, i64, Str);

/// q0, pass-through: every bid. Exercises the source and a `map`.
pub fn q0(events: &PCollection<Event>) -> PCollection<BidRow> {
    bids(events).map(|b| (b.auction, b.bidder, b.price, b.date_time, b.extra)).named("Q0")
}

/// q1, currency conversion: prices times 0.908, in integer thousandths.
/// Exercises `map`.
pub fn q1(events: &PCollection<Event>) -> PCollection<(u64, u64, Milli, i64, Str)> {
    bids(events).map(|b| (b.auction, b.bidder, Milli(b.price * 908), b.date_time, b.extra)).named("Q1")
}

/// q2, selection: bids on every 123rd auction. Exercises `filter`.
pub fn q2(events: &PCollection<Event>) -> PCollection<(u64, u64)> {
    bids(events).filter(|b| b.auction % 123 == 0).map(|b| (b.auction, b.price)).named("Q2")
}

// ---------------------------------------------------------------------------
// q3: a regular (unwindowed) join with per-key state.

/// One side of the q3 join.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Q3In {
    /// A person of OR, ID or CA: name, city, state.
    Person(Str, Str, Str),
    /// An auction of category 10 by this seller: its id.
    Auction(u64),
}

/// The q3 join, per seller: remembers the person, buffers auctions that
/// arrive before their seller.
#[derive(Clone)]
pub struct Q3Join;
const Q3_PERSON: ValueState<(Str, Str, Str)> = ValueState::new("person");
const Q3_WAITING: BagState<u64> = BagState::new("waiting_auctions");

impl StatefulDoFn for Q3Join {
    type Key = u64;
    type Value = Q3In;
    type Out = (Str, Str, Str, u64);
    fn process(&mut self, cx: &mut StateContext<'_, u64, Self::Out>, v: Q3In) {
        match v {
            Q3In::Person(name, city, state) => {
                for id in Q3_WAITING.read(cx) {
                    cx.output((name.clone(), city.clone(), state.clone(), id));
                }
                Q3_WAITING.clear(cx);
                Q3_PERSON.write(cx, (name, city, state));
            }
            Q3In::Auction(id) => match Q3_PERSON.read(cx) {
                Some((name, city, state)) => cx.output((name, city, state, id)),
                None => Q3_WAITING.add(cx, id),
            },
        }
    }
}

/// q3, local item suggestion: people in OR, ID or CA selling in category 10;
/// every match, whatever the order people and auctions arrive in. Exercises
/// `flatten` of two keyed collections and a stateful `ParDo` (value and bag
/// state) in the global window.
pub fn q3(events: &PCollection<Event>) -> PCollection<(Str, Str, Str, u64)> {
    let sellers = people(events)
        .filter(|p| matches!(&*p.state, "OR" | "ID" | "CA"))
        .map(|p| (p.id, Q3In::Person(p.name, p.city, p.state)));
    let items = auctions(events).filter(|a| a.category == 10).map(|a| (a.seller, Q3In::Auction(a.id)));
    sellers.flatten_with(&[items]).par_do_stateful(Q3Join).named("Q3")
}

// ---------------------------------------------------------------------------
// Winning bids (q4, q9): per auction, the best bid made while it was open.

/// An auction or a bid, keyed by auction id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AuctionOrBid {
    /// The auction.
    Auction(Auction),
    /// A bid on it.
    Bid(Bid),
}

/// Per auction: keeps the best bid made between its opening and its expiry
/// (highest price, then earliest, then lowest bidder id) and emits the
/// auction with it when the watermark passes the expiry (an event-time
/// timer). Bids that arrive before their auction wait until the watermark
/// passes their own time: by then the auction, opened no later than a valid
/// bid, has arrived.
#[derive(Clone)]
pub struct WinningBidFn;
const WB_AUCTION: ValueState<Auction> = ValueState::new("auction");
/// The auction's open interval `[dateTime, expires]`, read for every bid.
const WB_OPEN: ValueState<(i64, i64)> = ValueState::new("open");
const WB_BEST: ValueState<Bid> = ValueState::new("best_bid");
/// The best bid's rank: (price, -dateTime, -bidder), compared for every bid.
const WB_BEST_RANK: ValueState<(u64, i64, i64)> = ValueState::new("best_rank");
const WB_EARLY: BagState<Bid> = BagState::new("early_bids");
const WB_EARLY_LATEST: ValueState<i64> = ValueState::new("early_latest");
const WB_CLOSE_NAME: &str = "close";
const WB_CLOSE: TimerSpec = TimerSpec::event_time(WB_CLOSE_NAME);
const WB_FORGET: TimerSpec = TimerSpec::event_time("forget_early_bids");

/// Higher price first, then earlier, then lower bidder id.
fn bid_rank(b: &Bid) -> (u64, i64, i64) {
    (b.price, -b.date_time, -(b.bidder as i64))
}

impl WinningBidFn {
    fn offer(cx: &mut StateContext<'_, u64, (Auction, Bid)>, (opens, expires): (i64, i64), b: Bid) {
        if b.date_time >= opens
            && b.date_time <= expires
            && WB_BEST_RANK.read(cx).is_none_or(|best| bid_rank(&b) > best)
        {
            WB_BEST_RANK.write(cx, bid_rank(&b));
            WB_BEST.write(cx, b);
        }
    }
}

impl StatefulDoFn for WinningBidFn {
    type Key = u64;
    type Value = AuctionOrBid;
    type Out = (Auction, Bid);
    fn process(&mut self, cx: &mut StateContext<'_, u64, (Auction, Bid)>, v: AuctionOrBid) {
        match v {
            AuctionOrBid::Auction(a) => {
                let open = (a.date_time, a.expires);
                for b in WB_EARLY.read(cx) {
                    Self::offer(cx, open, b);
                }
                WB_EARLY.clear(cx);
                WB_EARLY_LATEST.clear(cx);
                WB_FORGET.clear(cx);
                WB_CLOSE.set(cx, Timestamp::from_millis(a.expires));
                WB_OPEN.write(cx, open);
                WB_AUCTION.write(cx, a);
            }
            AuctionOrBid::Bid(b) => match WB_OPEN.read(cx) {
                Some(open) => Self::offer(cx, open, b),
                None => {
                    let latest = WB_EARLY_LATEST.read(cx).map_or(b.date_time, |l| l.max(b.date_time));
                    WB_EARLY_LATEST.write(cx, latest);
                    WB_EARLY.add(cx, b);
                    WB_FORGET.set(cx, Timestamp::from_millis(latest));
                }
            },
        }
    }

    fn on_timer(&mut self, cx: &mut StateContext<'_, u64, (Auction, Bid)>, timer: &TimerFiring) {
        if timer.family == WB_CLOSE_NAME {
            if let (Some(a), Some(b)) = (WB_AUCTION.read(cx), WB_BEST.read(cx)) {
                cx.output((a, b));
            }
            WB_AUCTION.clear(cx);
            WB_OPEN.clear(cx);
            WB_BEST.clear(cx);
            WB_BEST_RANK.clear(cx);
        }
        // Early bids whose auction has not come by now never will (or came
        // and closed before them): either way they cannot win.
        WB_EARLY.clear(cx);
        WB_EARLY_LATEST.clear(cx);
    }
}

/// Per auction that received a valid bid: the auction and its winning bid,
/// when the auction closes. Exercises a stateful `ParDo` with value and bag
/// state and two event-time timers in the global window, with state that
/// is cleared as auctions close (bounded, whatever the stream's length).
pub fn winning_bids(events: &PCollection<Event>) -> PCollection<(Auction, Bid)> {
    let a = auctions(events).map(|a| (a.id, AuctionOrBid::Auction(a)));
    let b = bids(events).map(|b| (b.auction, AuctionOrBid::Bid(b)));
    a.flatten_with(&[b]).par_do_stateful(WinningBidFn).named("WinningBids")
}

/// The average of integers, truncated toward zero (SQL's `AVG` of `BIGINT`).
#[derive(Copy, Clone, Debug, Default)]
pub struct IntegerMean;

impl CombineFn<u64> for IntegerMean {
    type Acc = (u128, u64);
    type Out = u64;
    fn create_accumulator(&self) -> (u128, u64) {
        (0, 0)
    }
    fn add_input(&self, acc: &mut (u128, u64), v: u64) {
        acc.0 += v as u128;
        acc.1 += 1;
    }
    fn merge_accumulators(&self, acc: &mut (u128, u64), other: (u128, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn extract_output(&self, acc: &(u128, u64)) -> u64 {
        if acc.1 == 0 {
            0
        } else {
            (acc.0 / acc.1 as u128) as u64
        }
    }
}

/// q4, average closing price per category: winning bids, then the integer
/// mean of their prices per category once all input is in. Exercises
/// stateful processing with timers feeding a `combine_per_key` in the global
/// window (default trigger: one pane at the end of input).
pub fn q4(events: &PCollection<Event>) -> PCollection<(u64, u64)> {
    winning_bids(events).map(|(a, b)| (a.category, b.price)).combine_per_key(IntegerMean).named("Q4")
}

/// q9, winning bids: every auction with its winning bid (Flink's definition:
/// the highest price while the auction is open, earliest first on ties).
/// Row: the auction's fields, then the bid's auction, bidder, price,
/// dateTime and extra.
pub type Q9Row = ((u64, AuctionFields), (u64, u64, u64, i64, Str));

/// An auction's fields but its id: item name, description, initial bid,
/// reserve, dateTime, expires, seller, category, extra.
pub type AuctionFields = (Str, Str, u64, u64, i64, i64, u64, u64, Str);

fn auction_fields(a: &Auction) -> AuctionFields {
    (
        a.item_name.clone(),
        a.description.clone(),
        a.initial_bid,
        a.reserve,
        a.date_time,
        a.expires,
        a.seller,
        a.category,
        a.extra.clone(),
    )
}

/// q9. Exercises the same stateful `ParDo` as q4.
pub fn q9(events: &PCollection<Event>) -> PCollection<Q9Row> {
    winning_bids(events)
        .map(|(a, b)| ((a.id, auction_fields(&a)), (b.auction, b.bidder, b.price, b.date_time, b.extra)))
        .named("Q9")
}

// ---------------------------------------------------------------------------
// q5, q7: windowed aggregates, then the maximum per window.

/// Keeps every input whose key is the largest seen (all ties).
#[derive(Clone)]
pub struct AllMaxBy<T> {
    key: fn(&T) -> u64,
}

impl<T: Data> CombineFn<T> for AllMaxBy<T> {
    type Acc = (u64, Vec<T>);
    type Out = Vec<T>;
    fn create_accumulator(&self) -> (u64, Vec<T>) {
        (0, Vec::new())
    }
    fn add_input(&self, acc: &mut (u64, Vec<T>), v: T) {
        let k = (self.key)(&v);
        if acc.1.is_empty() || k > acc.0 {
            acc.0 = k;
            acc.1.clear();
            acc.1.push(v);
        } else if k == acc.0 {
            acc.1.push(v);
        }
    }
    fn merge_accumulators(&self, acc: &mut (u64, Vec<T>), other: (u64, Vec<T>)) {
        for v in other.1 {
            self.add_input(acc, v);
        }
    }
    fn extract_output(&self, acc: &(u64, Vec<T>)) -> Vec<T> {
        acc.1.clone()
    }
}

/// q5, hot items: per sliding window of 10 s every 2 s, the auctions with
/// the most bids. Row: auction, bids, window start. Exercises sliding
/// windows, `count_per_key`, a second (global-per-window) `combine_globally`
/// whose panes keep the window, and a `ParDo` reading the window.
pub fn q5(events: &PCollection<Event>) -> PCollection<(u64, u64, i64)> {
    let window = SlidingWindows::new(Duration::from_secs(10), Duration::from_secs(2), Duration::from_millis(0))
        .expect("valid sliding windows");
    // Project before windowing: each bid is copied into five windows.
    let counts = bids(events).map(|b| (b.auction, ())).window_into(strategy(window)).count_per_key();
    let hottest = counts.combine_globally_without_defaults(AllMaxBy { key: |c: &(u64, u64)| c.1 });
    with_window(&hottest, |hot, w, out| {
        for &(auction, n) in hot {
            out((auction, n, w.start().millis()))
        }
    })
    .named("Q5")
}

/// q7, highest bid: per fixed window of 10 s, every bid at the window's
/// highest price. Exercises fixed windows and `combine_globally` with a
/// combiner that keeps ties. (Flink's SQL joins on `dateTime BETWEEN end -
/// 10 s AND end`, which also admits a bid at exactly the next window's start
/// with the same price; the model's half-open windows do not.)
pub fn q7(events: &PCollection<Event>) -> PCollection<BidRow> {
    let window = FixedWindows::of(Duration::from_secs(10)).expect("valid fixed windows");
    bids(events)
        .window_into(strategy(window))
        .combine_globally_without_defaults(AllMaxBy { key: |b: &Bid| b.price })
        .flat_map(|bs| bs.into_iter().map(|b| (b.auction, b.bidder, b.price, b.date_time, b.extra)))
        .named("Q7")
}

// ---------------------------------------------------------------------------
// q8: windowed join.

/// q8, new users: people who opened an auction in the same 10 s window as
/// they registered. Row: id, name, window start. Exercises a windowed
/// `co_group_by_key`.
pub fn q8(events: &PCollection<Event>) -> PCollection<(u64, Str, i64)> {
    let window = || strategy(FixedWindows::of(Duration::from_secs(10)).expect("valid fixed windows"));
    let persons = people(events).map(|p| (p.id, p.name)).window_into(window());
    let sellers = auctions(events).map(|a| (a.seller, ())).window_into(window());
    let joined = persons.co_group_by_key(&sellers);
    with_window(&joined, |(id, (names, sold)), w, out| {
        if !sold.is_empty() {
            let distinct: std::collections::BTreeSet<&Str> = names.iter().collect();
            for name in distinct {
                out((*id, name.clone(), w.start().millis()))
            }
        }
    })
    .named("Q8")
}

// ---------------------------------------------------------------------------
// q11: sessions.

/// q11, user sessions: bids per bidder session with a 10 s gap. Row:
/// bidder, bids, session start, session end (last bid + 10 s). Exercises
/// merging session windows and `count_per_key`.
pub fn q11(events: &PCollection<Event>) -> PCollection<(u64, u64, i64, i64)> {
    let sessions = Sessions::with_gap(Duration::from_secs(10)).expect("valid gap");
    let counts = bids(events).map(|b| (b.bidder, ())).window_into(strategy(sessions)).count_per_key();
    with_window(&counts, |&(bidder, n), w, out| out((bidder, n, w.start().millis(), window_end(w)))).named("Q11")
}

// ---------------------------------------------------------------------------
// q12: processing time.

/// q12, processing-time windows: bids per bidder, counted in panes that
/// fire 10 s of processing time after each pane's first bid (discarding), in
/// the global window. Row: bidder, bids in the pane. Not deterministic:
/// the panes depend on the speed of the run. Exercises processing-time
/// triggers (`Repeatedly(AfterProcessingTime + 10 s)`) and discarding mode.
pub fn q12(events: &PCollection<Event>) -> PCollection<(u64, u64)> {
    let s = WindowingStrategy::new(weir_model::GlobalWindows)
        .trigger(Trigger::repeatedly(Trigger::after_processing_time().plus_delay(Duration::from_secs(10))))
        .accumulation(weir_model::AccumulationMode::Discarding);
    bids(events).map(|b| (b.bidder, ())).window_into(s).count_per_key().named("Q12")
}

// ---------------------------------------------------------------------------
// q13: a side input.

/// Looks each bid's auction up in a side input table.
#[derive(Clone)]
pub struct Q13Lookup {
    side: SideInput<(u64, Str)>,
    table: Option<std::collections::HashMap<u64, Str>>,
}

impl DoFn for Q13Lookup {
    type In = Bid;
    type Out = (u64, u64, u64, i64, Str);
    fn process(&mut self, cx: &mut ProcessContext<'_, Bid, Self::Out>) {
        let table = self.table.get_or_insert_with(|| cx.side_iterable(&self.side).iter().cloned().collect());
        let b = cx.element();
        if let Some(v) = table.get(&(b.auction % 10_000)).cloned() {
            let row = (b.auction, b.bidder, b.price, b.date_time, v);
            cx.output(row);
        }
    }
}

/// q13, bounded side input join: each bid with the value the side table
/// holds for `auction mod 10000` (here a table made in the pipeline, one
/// value per key). Exercises side inputs (the table is read once complete).
pub fn q13(events: &PCollection<Event>) -> PCollection<(u64, u64, u64, i64, Str)> {
    let p = events.pipeline();
    let side = p.create((0..10_000u64).map(|k| (k, Str::from(format!("side-{k}"))))).as_side_input();
    bids(events).par_do_with_side_inputs(Q13Lookup { side: side.clone(), table: None }, &[side.erased()], &[]).main
}

// ---------------------------------------------------------------------------
// q14–q17: calculations and per-day statistics.

fn civil_date(ms: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `yyyy-MM-dd` of an epoch-millisecond time (UTC).
///
/// ```
/// assert_eq!(weir_nexmark::queries::day(1_436_918_400_000), "2015-07-15");
/// ```
pub fn day(ms: i64) -> String {
    let (y, m, d) = civil_date(ms);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `yyyy-MM-dd HH:mm:ss.SSS` of an epoch-millisecond time (UTC).
///
/// ```
/// assert_eq!(weir_nexmark::queries::date_time(1_436_918_406_123), "2015-07-15 00:00:06.123");
/// ```
pub fn date_time(ms: i64) -> String {
    let t = ms.rem_euclid(86_400_000);
    format!("{} {:02}:{:02}:{:02}.{:03}", day(ms), t / 3_600_000, t / 60_000 % 60, t / 1000 % 60, t % 1000)
}

fn hour(ms: i64) -> i64 {
    ms.rem_euclid(86_400_000) / 3_600_000
}

/// q14, calculation: bids priced (× 0.908) between 1,000,000 and
/// 50,000,000, with a time-of-day class and the count of `c` in `extra`.
/// Exercises `filter` and `map`.
pub fn q14(events: &PCollection<Event>) -> PCollection<(u64, u64, Milli, Str, i64, Str, u64)> {
    bids(events)
        .filter(|b| b.price * 908 > 1_000_000_000 && b.price * 908 < 50_000_000_000)
        .map(|b| {
            let h = hour(b.date_time);
            let class = if (8..=18).contains(&h) {
                "dayTime"
            } else if h <= 6 || h >= 20 {
                "nightTime"
            } else {
                "otherTime"
            };
            let c = b.extra.bytes().filter(|&x| x == b'c').count() as u64;
            (b.auction, b.bidder, Milli(b.price * 908), Str::from(class), b.date_time, b.extra, c)
        })
        .named("Q14")
}

fn rank(price: u64) -> usize {
    if price < 10_000 {
        0
    } else if price < 1_000_000 {
        1
    } else {
        2
    }
}

/// Counts of bids, distinct bidders and distinct auctions, in total and per
/// price rank (< 10,000; < 1,000,000; the rest), and the latest `HH:mm`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BidStats;

/// The accumulator of [`BidStats`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BidStatsAcc {
    bids: [u64; 3],
    bidders: [HashSet<u64>; 3],
    auctions: [HashSet<u64>; 3],
    latest: i64,
}

/// The result of [`BidStats`]: totals then the three ranks of bids,
/// bidders and auctions (12 counts), and the latest time of day (ms).
pub type BidStatsOut = ([u64; 12], i64);

impl CombineFn<Bid> for BidStats {
    type Acc = BidStatsAcc;
    type Out = BidStatsOut;
    fn create_accumulator(&self) -> BidStatsAcc {
        BidStatsAcc::default()
    }
    fn add_input(&self, acc: &mut BidStatsAcc, b: Bid) {
        let r = rank(b.price);
        acc.bids[r] += 1;
        acc.bidders[r].insert(b.bidder);
        acc.auctions[r].insert(b.auction);
        acc.latest = acc.latest.max(b.date_time.rem_euclid(86_400_000));
    }
    fn merge_accumulators(&self, acc: &mut BidStatsAcc, other: BidStatsAcc) {
        for r in 0..3 {
            acc.bids[r] += other.bids[r];
            acc.bidders[r].extend(other.bidders[r].iter());
            acc.auctions[r].extend(other.auctions[r].iter());
        }
        acc.latest = acc.latest.max(other.latest);
    }
    fn extract_output(&self, acc: &BidStatsAcc) -> BidStatsOut {
        let union = |sets: &[HashSet<u64>; 3]| sets.iter().flatten().collect::<HashSet<_>>().len() as u64;
        let n = |s: &HashSet<u64>| s.len() as u64;
        (
            [
                acc.bids.iter().sum(),
                acc.bids[0],
                acc.bids[1],
                acc.bids[2],
                union(&acc.bidders),
                n(&acc.bidders[0]),
                n(&acc.bidders[1]),
                n(&acc.bidders[2]),
                union(&acc.auctions),
                n(&acc.auctions[0]),
                n(&acc.auctions[1]),
                n(&acc.auctions[2]),
            ],
            acc.latest,
        )
    }
}

fn one_day() -> WindowingStrategy {
    strategy(FixedWindows::of(Duration::from_hours(24)).expect("valid fixed windows"))
}

/// Row of q15: day, then bids, bidders and auctions in total and per rank.
pub type Q15Row = (String, [u64; 12]);

/// q15, bidding statistics per day. Exercises daily fixed windows and a
/// `combine_globally` with distinct counts.
pub fn q15(events: &PCollection<Event>) -> PCollection<Q15Row> {
    let stats = bids(events).window_into(one_day()).combine_globally_without_defaults(BidStats);
    with_window(&stats, |(c, _), w, out| out((day(w.start().millis()), *c))).named("Q15")
}

/// Row of q16: channel, day, latest minute, then the q15 counts.
pub type Q16Row = (Str, String, String, [u64; 12]);

/// q16, channel statistics per day. Exercises daily fixed windows and
/// `combine_per_key` by channel.
pub fn q16(events: &PCollection<Event>) -> PCollection<Q16Row> {
    let stats = bids(events).window_into(one_day()).map(|b| (b.channel.clone(), b)).combine_per_key(BidStats);
    with_window(&stats, |(channel, (c, latest)), w, out| {
        let minute = format!("{:02}:{:02}", latest / 3_600_000, latest % 3_600_000 / 60_000);
        out((channel.clone(), day(w.start().millis()), minute, *c))
    })
    .named("Q16")
}

/// Per auction and day: bids per rank, and the min, max, mean and sum of prices.
#[derive(Clone, Copy, Debug, Default)]
pub struct PriceStats;

impl CombineFn<u64> for PriceStats {
    type Acc = ([u64; 3], u64, u64, u128);
    type Out = [u64; 8];
    fn create_accumulator(&self) -> Self::Acc {
        ([0; 3], u64::MAX, 0, 0)
    }
    fn add_input(&self, acc: &mut Self::Acc, price: u64) {
        acc.0[rank(price)] += 1;
        acc.1 = acc.1.min(price);
        acc.2 = acc.2.max(price);
        acc.3 += price as u128;
    }
    fn merge_accumulators(&self, acc: &mut Self::Acc, o: Self::Acc) {
        for r in 0..3 {
            acc.0[r] += o.0[r];
        }
        acc.1 = acc.1.min(o.1);
        acc.2 = acc.2.max(o.2);
        acc.3 += o.3;
    }
    fn extract_output(&self, acc: &Self::Acc) -> [u64; 8] {
        let n: u64 = acc.0.iter().sum();
        let mean = if n == 0 { 0 } else { (acc.3 / n as u128) as u64 };
        [n, acc.0[0], acc.0[1], acc.0[2], acc.1, acc.2, mean, acc.3 as u64]
    }
}

/// q17, auction statistics per day. Row: auction, day, bids, bids per rank,
/// min, max, mean (truncated) and sum of prices. Exercises daily windows
/// and `combine_per_key`.
pub fn q17(events: &PCollection<Event>) -> PCollection<(u64, String, [u64; 8])> {
    let stats = bids(events).map(|b| (b.auction, b.price)).window_into(one_day()).combine_per_key(PriceStats);
    with_window(&stats, |(auction, s), w, out| out((*auction, day(w.start().millis()), *s))).named("Q17")
}

// ---------------------------------------------------------------------------
// q18, q19: per-key ranking in the global window.

/// Row of q18–q19: auction, bidder, price, channel, url, dateTime, extra.
pub type FullBidRow = (u64, u64, u64, Str, Str, i64, Str);

fn full_row(b: Bid) -> FullBidRow {
    (b.auction, b.bidder, b.price, b.channel, b.url, b.date_time, b.extra)
}

/// Keeps the `n` greatest inputs by a total order (`cmp`; greater first).
pub struct TopBy<T> {
    n: usize,
    cmp: fn(&T, &T) -> std::cmp::Ordering,
}

impl<T> Clone for TopBy<T> {
    fn clone(&self) -> Self {
        TopBy { n: self.n, cmp: self.cmp }
    }
}

impl<T: Data> CombineFn<T> for TopBy<T> {
    type Acc = Vec<T>;
    type Out = Vec<T>;
    fn create_accumulator(&self) -> Vec<T> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<T>, v: T) {
        if acc.capacity() == 0 {
            // One accumulator per key lives until the end of input: no
            // spare slots beyond `n` (a Vec would start with four).
            acc.reserve_exact(self.n.min(4));
        }
        let at = acc.partition_point(|x| (self.cmp)(x, &v).is_ge());
        if at < self.n {
            acc.insert(at, v);
            acc.truncate(self.n);
        }
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

/// q18, last bid per bidder and auction, after all input (latest first,
/// then highest price, then smallest `extra` on ties). Exercises a `combine_per_key` on a compound
/// key in the global window.
pub fn q18(events: &PCollection<Event>) -> PCollection<FullBidRow> {
    bids(events)
        .map(|b| ((b.bidder, b.auction), b))
        .combine_per_key(TopBy {
            n: 1,
            cmp: |a: &Bid, b: &Bid| (a.date_time, a.price, &b.extra).cmp(&(b.date_time, b.price, &a.extra)),
        })
        .flat_map(|(_, top)| top.into_iter().map(full_row))
        .named("Q18")
}

/// q19, the 10 highest bids of each auction, with their rank (1 = highest;
/// ties broken by time, then bidder). Exercises a top-N `combine_per_key`.
pub fn q19(events: &PCollection<Event>) -> PCollection<(FullBidRow, u64)> {
    bids(events)
        .map(|b| (b.auction, b))
        .combine_per_key(TopBy {
            n: 10,
            cmp: |a: &Bid, b: &Bid| (a.price, b.date_time, b.bidder).cmp(&(b.price, a.date_time, a.bidder)),
        })
        .flat_map(|(_, top)| top.into_iter().enumerate().map(|(i, b)| (full_row(b), i as u64 + 1)))
        .named("Q19")
}

// ---------------------------------------------------------------------------
// q20: a regular join that keeps bids until their auction is known.

/// Per auction: bids of category-10 auctions with the auction's fields.
#[derive(Clone)]
pub struct Q20Join;
const Q20_AUCTION: ValueState<Auction> = ValueState::new("auction");
/// Whether the auction is known and of category 10, read for every bid.
const Q20_MATCHES: ValueState<bool> = ValueState::new("matches");
const Q20_WAITING: BagState<Bid> = BagState::new("waiting_bids");

/// Row of q20: the bid's fields, then the auction's item name, description,
/// initial bid, reserve, dateTime, expires, seller, category and extra.
pub type Q20Row = (FullBidRow, AuctionFields);

fn q20_row(b: Bid, a: &Auction) -> Q20Row {
    (full_row(b), auction_fields(a))
}

impl StatefulDoFn for Q20Join {
    type Key = u64;
    type Value = AuctionOrBid;
    type Out = Q20Row;
    fn process(&mut self, cx: &mut StateContext<'_, u64, Q20Row>, v: AuctionOrBid) {
        match v {
            AuctionOrBid::Auction(a) => {
                let matches = a.category == 10;
                if matches {
                    for b in Q20_WAITING.read(cx) {
                        cx.output(q20_row(b, &a));
                    }
                    Q20_AUCTION.write(cx, a);
                }
                Q20_MATCHES.write(cx, matches);
                Q20_WAITING.clear(cx);
            }
            AuctionOrBid::Bid(b) => match Q20_MATCHES.read(cx) {
                Some(true) => {
                    if let Some(a) = Q20_AUCTION.read(cx) {
                        cx.output(q20_row(b, &a));
                    }
                }
                Some(false) => {}
                None => Q20_WAITING.add(cx, b),
            },
        }
    }
}

/// q20, expand bid with auction: bids of category-10 auctions joined with
/// their auction, whatever the arrival order. Exercises a stateful `ParDo`
/// join in the global window.
pub fn q20(events: &PCollection<Event>) -> PCollection<Q20Row> {
    let a = auctions(events).map(|a| (a.id, AuctionOrBid::Auction(a)));
    let b = bids(events).map(|b| (b.auction, AuctionOrBid::Bid(b)));
    a.flatten_with(&[b]).par_do_stateful(Q20Join).named("Q20")
}

// ---------------------------------------------------------------------------
// q21, q22: string functions.

/// `REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)`.
fn channel_id(url: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(i) = url[from..].find("channel_id=") {
        let at = from + i;
        if at == 0 || url.as_bytes()[at - 1] == b'&' {
            let rest = &url[at + "channel_id=".len()..];
            return Some(rest.split('&').next().unwrap_or(""));
        }
        from = at + 1;
    }
    None
}

/// q21, add channel id: a code for the four big channels, else the URL's
/// `channel_id` parameter; bids with neither are dropped. Exercises
/// `flat_map`.
pub fn q21(events: &PCollection<Event>) -> PCollection<(u64, u64, u64, Str, String)> {
    bids(events)
        .flat_map(|b| {
            let code = match b.channel.to_ascii_lowercase().as_str() {
                "apple" => Some("0".to_string()),
                "google" => Some("1".to_string()),
                "facebook" => Some("2".to_string()),
                "baidu" => Some("3".to_string()),
                _ => channel_id(&b.url).map(str::to_string),
            };
            code.map(|c| (b.auction, b.bidder, b.price, b.channel, c))
        })
        .named("Q21")
}

/// q22, get URL directories: the 4th to 6th `/`-separated parts of the
/// URL (empty when missing). Exercises `map`.
pub fn q22(events: &PCollection<Event>) -> PCollection<(u64, u64, u64, Str, String, String, String)> {
    bids(events)
        .map(|b| {
            let mut parts = b.url.split('/').skip(3);
            let mut next = || parts.next().unwrap_or("").to_string();
            let (d1, d2, d3) = (next(), next(), next());
            (b.auction, b.bidder, b.price, b.channel, d1, d2, d3)
        })
        .named("Q22")
}

// ---------------------------------------------------------------------------

/// A query, by name.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Query {
    /// Read and parse the input, nothing else: the cost floor.
    Parse,
    /// q0.
    Q0,
    /// q1.
    Q1,
    /// q2.
    Q2,
    /// q3.
    Q3,
    /// q4.
    Q4,
    /// q5.
    Q5,
    /// q7.
    Q7,
    /// q8.
    Q8,
    /// q9.
    Q9,
    /// q11.
    Q11,
    /// q12.
    Q12,
    /// q13.
    Q13,
    /// q14.
    Q14,
    /// q15.
    Q15,
    /// q16.
    Q16,
    /// q17.
    Q17,
    /// q18.
    Q18,
    /// q19.
    Q19,
    /// q20.
    Q20,
    /// q21.
    Q21,
    /// q22.
    Q22,
}

impl Query {
    /// Every query, in order.
    pub const ALL: [Query; 22] = [
        Query::Parse,
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q7,
        Query::Q8,
        Query::Q9,
        Query::Q11,
        Query::Q12,
        Query::Q13,
        Query::Q14,
        Query::Q15,
        Query::Q16,
        Query::Q17,
        Query::Q18,
        Query::Q19,
        Query::Q20,
        Query::Q21,
        Query::Q22,
    ];

    /// The queries with reference results for `e1m.jsonl`.
    pub const REFERENCE: [Query; 9] =
        [Query::Q0, Query::Q1, Query::Q2, Query::Q3, Query::Q4, Query::Q5, Query::Q7, Query::Q8, Query::Q11];

    /// Its name: `parse`, `q0`, `q1`, …
    pub fn name(self) -> &'static str {
        match self {
            Query::Parse => "parse",
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q3 => "q3",
            Query::Q4 => "q4",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
            Query::Q8 => "q8",
            Query::Q9 => "q9",
            Query::Q11 => "q11",
            Query::Q12 => "q12",
            Query::Q13 => "q13",
            Query::Q14 => "q14",
            Query::Q15 => "q15",
            Query::Q16 => "q16",
            Query::Q17 => "q17",
            Query::Q18 => "q18",
            Query::Q19 => "q19",
            Query::Q20 => "q20",
            Query::Q21 => "q21",
            Query::Q22 => "q22",
        }
    }

    /// Whether its result depends on the run's speed (processing time).
    pub fn is_deterministic(self) -> bool {
        self != Query::Q12
    }

    /// Add the query to the pipeline over `events`; its rows go to a new
    /// in-memory output (`parse` writes none).
    pub fn build(self, events: &PCollection<Event>) -> CsvOutput {
        let out = CsvOutput::in_memory();
        self.build_into(events, &out);
        out
    }

    /// Add the query to the pipeline over `events`; each result row as its
    /// CSV line (no newline), for sinks other than files.
    ///
    /// ```
    /// use weir_nexmark::{read_events, GeneratorConfig, Input, Query};
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let (events, _) = read_events(&p, &Input::Generated(GeneratorConfig::new(20_000))).unwrap();
    /// let lines = Query::Q7.build_lines(&events).collect();
    /// let rows = Query::Q7.build(&events);
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// let mut lines: Vec<String> = lines.values().into_iter().map(|l| l + "\n").collect();
    /// lines.sort();
    /// let rows: Vec<String> = weir_nexmark::sorted_lines(&rows.take_buffers().unwrap())
    ///     .into_iter()
    ///     .map(|l| String::from_utf8(l.to_vec()).unwrap())
    ///     .collect();
    /// assert!(!lines.is_empty());
    /// assert_eq!(lines, rows);
    /// ```
    pub fn build_lines(self, events: &PCollection<Event>) -> PCollection<String> {
        fn lines<R: Data + CsvRow>(rows: PCollection<R>) -> PCollection<String> {
            rows.map(|r: R| {
                let mut line = Vec::new();
                r.write_row(&mut line);
                line.pop();
                String::from_utf8(line).expect("CSV rows are UTF-8")
            })
        }
        match self {
            Query::Parse => lines(events.filter(|_| false).map(|_| (0u64, 0u64))),
            Query::Q0 => lines(q0(events)),
            Query::Q1 => lines(q1(events)),
            Query::Q2 => lines(q2(events)),
            Query::Q3 => lines(q3(events)),
            Query::Q4 => lines(q4(events)),
            Query::Q5 => lines(q5(events)),
            Query::Q7 => lines(q7(events)),
            Query::Q8 => lines(q8(events)),
            Query::Q9 => lines(q9(events)),
            Query::Q11 => lines(q11(events)),
            Query::Q12 => lines(q12(events)),
            Query::Q13 => lines(q13(events)),
            Query::Q14 => lines(q14(events)),
            Query::Q15 => lines(q15(events)),
            Query::Q16 => lines(q16(events)),
            Query::Q17 => lines(q17(events)),
            Query::Q18 => lines(q18(events)),
            Query::Q19 => lines(q19(events)),
            Query::Q20 => lines(q20(events)),
            Query::Q21 => lines(q21(events)),
            Query::Q22 => lines(q22(events)),
        }
    }

    /// Add the query to the pipeline over `events`, its rows going to `out`.
    pub fn build_into(self, events: &PCollection<Event>, out: &CsvOutput) {
        match self {
            Query::Parse => {
                // Count the events so the source's output is consumed.
                events.filter(|_| false).map(|_| (0u64, 0u64)).write_csv_into(out)
            }
            Query::Q0 => q0(events).write_csv_into(out),
            Query::Q1 => q1(events).write_csv_into(out),
            Query::Q2 => q2(events).write_csv_into(out),
            Query::Q3 => q3(events).write_csv_into(out),
            Query::Q4 => q4(events).write_csv_into(out),
            Query::Q5 => q5(events).write_csv_into(out),
            Query::Q7 => q7(events).write_csv_into(out),
            Query::Q8 => q8(events).write_csv_into(out),
            Query::Q9 => q9(events).write_csv_into(out),
            Query::Q11 => q11(events).write_csv_into(out),
            Query::Q12 => q12(events).write_csv_into(out),
            Query::Q13 => q13(events).write_csv_into(out),
            Query::Q14 => q14(events).write_csv_into(out),
            Query::Q15 => q15(events).write_csv_into(out),
            Query::Q16 => q16(events).write_csv_into(out),
            Query::Q17 => q17(events).write_csv_into(out),
            Query::Q18 => q18(events).write_csv_into(out),
            Query::Q19 => q19(events).write_csv_into(out),
            Query::Q20 => q20(events).write_csv_into(out),
            Query::Q21 => q21(events).write_csv_into(out),
            Query::Q22 => q22(events).write_csv_into(out),
        }
    }
}

impl std::str::FromStr for Query {
    type Err = String;
    fn from_str(s: &str) -> Result<Query, String> {
        let want = s.trim().to_ascii_lowercase();
        Query::ALL.into_iter().find(|q| q.name() == want).ok_or_else(|| {
            format!(
                "unknown query '{s}': expected one of {}",
                Query::ALL.iter().map(|q| q.name()).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(1_436_918_400_000 + 86_399_999), "2015-07-15");
        assert_eq!(day(951_782_400_000), "2000-02-29");
        assert_eq!(hour(1_436_918_400_000 + 3_600_000 * 13 + 5), 13);
    }

    #[test]
    fn channel_ids() {
        assert_eq!(channel_id("https://x/a/b/item.htm?query=1&channel_id=123"), Some("123"));
        assert_eq!(channel_id("channel_id=7&x=1"), Some("7"));
        assert_eq!(channel_id("https://x?query=1&xchannel_id=5"), None);
        assert_eq!(channel_id("https://x?query=1"), None);
    }

    #[test]
    fn top_by_and_all_max() {
        let t = TopBy { n: 2, cmp: |a: &u64, b: &u64| a.cmp(b) };
        let mut acc = t.create_accumulator();
        for v in [3, 9, 1, 7, 9] {
            t.add_input(&mut acc, v);
        }
        assert_eq!(t.extract_output(&acc), vec![9, 9]);
        let m = AllMaxBy { key: |x: &(u64, u64)| x.1 };
        let mut acc = m.create_accumulator();
        for v in [(1, 2), (2, 5), (3, 5), (4, 1)] {
            m.add_input(&mut acc, v);
        }
        let mut other = m.create_accumulator();
        m.add_input(&mut other, (5, 5));
        m.merge_accumulators(&mut acc, other);
        assert_eq!(m.extract_output(&acc), vec![(2, 5), (3, 5), (5, 5)]);
    }

    #[test]
    fn query_names_round_trip() {
        for q in Query::ALL {
            assert_eq!(q.name().parse::<Query>().unwrap(), q);
        }
        assert!("q6".parse::<Query>().unwrap_err().contains("q5, q7"));
    }
}
