//! Weir's in-process NEXMark generator: events made in memory, with no file
//! and no JSON, so a benchmark measures the engine rather than the parser
//! (as Flink's and Feldera's harnesses do).
//!
//! It follows the event model of `nexmark_gen.py` (and of Beam's and Flink's
//! generators): events are numbered `n = 0, 1, …`; in every block of 50 the
//! first is a person, the next 3 auctions and the other 46 bids; event `n`
//! happens at `base_time + n * 1000 / rate` ms; ids are dense from 1000;
//! sellers, auctions and bidders are "hot" with the reference proportions;
//! prices are `round(10^(6u) * 100)` cents. The random values come from a
//! counter-based generator (SplitMix64 of the seed and the event number), so
//! an event depends only on `(seed, n)`, whatever the number of workers; they
//! are not the Python generator's values.
//!
//! Worker `i` of `n` makes blocks `i, i + n, i + 2n, …`, so each worker's
//! events are in time order, like the shards of `nexmark_gen.py --shards`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{Auction, Bid, Event, Person, Str};
use crate::NexmarkError;

const PROPORTION: u64 = 50;
const PERSONS: u64 = 1;
const AUCTIONS: u64 = 3;
const FIRST_ID: u64 = 1000;
const HOT_BATCH: u64 = 100;
const ACTIVE_PEOPLE: u64 = 1000;
const IN_FLIGHT_AUCTIONS: u64 = 100;
const ID_LEAD: u64 = 10;
const CHANNELS: usize = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] =
    ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"];
const FIRST_NAMES: [&str; 11] =
    ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"];
const LAST_NAMES: [&str; 9] = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];
/// Distinct strings per pool (item names, descriptions, e-mails, extras, …).
const POOL: usize = 1024;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorConfig {
    /// Number of events.
    pub events: u64,
    /// Events per second of event time.
    pub rate: u64,
    /// Random seed.
    pub seed: u64,
    /// Event time of event 0, epoch milliseconds.
    pub base_time: i64,
    /// A live stream: each event is read no earlier than its event time by
    /// the wall clock (with `base_time` about now, `rate` events per second
    /// of real time), and until then its split is idle. For latency
    /// measurements: the watermark passes a window's end when the clock
    /// does.
    #[serde(default)]
    pub live: bool,
}

impl GeneratorConfig {
    /// `events` events at 10,000 events/s from 2015-07-15T00:00:00Z, seed 1
    /// (the reference input's parameters).
    pub fn new(events: u64) -> Self {
        GeneratorConfig { events, rate: 10_000, seed: 1, base_time: 1_436_918_400_000, live: false }
    }

    /// Check the parameters.
    pub fn validate(&self) -> Result<(), NexmarkError> {
        if self.rate == 0 {
            return Err(NexmarkError::Config("the generator's rate must be at least 1 event/s".into()));
        }
        let last = self.base_time as i128 + (self.events as i128 * 1000) / self.rate as i128 + 86_400_000 * 365;
        if self.base_time < 0 || last > i64::MAX as i128 / 2 {
            return Err(NexmarkError::Config(format!(
                "base time {} with {} events at {} events/s leaves the range of timestamps",
                self.base_time, self.events, self.rate
            )));
        }
        Ok(())
    }
}

/// SplitMix64: a counter-based source of random bits.
#[derive(Clone, Copy)]
struct Rng(u64);

impl Rng {
    fn for_event(seed: u64, n: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
    fn letters(&mut self, len: usize, blank: u8) -> String {
        (0..len)
            .map(|_| if self.below(13) == 0 { blank as char } else { (b'a' + self.below(26) as u8) as char })
            .collect()
    }
    fn string(&mut self, max_len: u64) -> String {
        let len = 3 + self.below(max_len - 3) as usize;
        self.letters(len, b' ').trim().to_string()
    }
}

/// Prices `round(10^(6u) * 100)` cents at `PRICES` evenly spaced `u`: a
/// table lookup instead of a `powf` per event.
const PRICES: usize = 1 << 16;

/// Strings (and prices) shared by the events of one generator.
struct Pools {
    prices: Vec<u64>,
    names: Vec<Str>,
    emails: Vec<Str>,
    cards: Vec<Str>,
    cities: Vec<Str>,
    states: Vec<Str>,
    items: Vec<Str>,
    descriptions: Vec<Str>,
    extras: Vec<Str>,
    channels: Vec<(Str, Str)>,
}

impl Pools {
    fn new(seed: u64) -> Pools {
        let mut r = Rng::for_event(seed, u64::MAX);
        let strs = |r: &mut Rng, f: &mut dyn FnMut(&mut Rng) -> String| (0..POOL).map(|_| Str::from(f(r))).collect();
        let base_url = |r: &mut Rng| {
            let parts: Vec<String> = (0..3)
                .map(|_| {
                    let len = 3 + r.below(2) as usize;
                    r.letters(len, b'_')
                })
                .collect();
            format!("https://www.nexmark.com/{}/{}/{}/item.htm?query=1", parts[0], parts[1], parts[2])
        };
        let mut channels: Vec<(Str, Str)> =
            HOT_CHANNELS.iter().map(|c| (Str::from(*c), Str::from(base_url(&mut r)))).collect();
        for i in 0..CHANNELS {
            let mut url = base_url(&mut r);
            if r.below(10) > 0 {
                url.push_str(&format!("&channel_id={}", (i as i32).reverse_bits().unsigned_abs()));
            }
            channels.push((Str::from(format!("channel-{i}")), Str::from(url)));
        }
        Pools {
            prices: (0..PRICES)
                .map(|i| (10f64.powf(i as f64 / PRICES as f64 * 6.0) * 100.0 + 0.5).floor() as u64)
                .collect(),
            names: FIRST_NAMES
                .iter()
                .flat_map(|f| LAST_NAMES.iter().map(move |l| Str::from(format!("{f} {l}"))))
                .collect(),
            emails: strs(&mut r, &mut |r| format!("{}@{}.com", r.string(7), r.string(5))),
            cards: strs(&mut r, &mut |r| {
                format!("{:04} {:04} {:04} {:04}", r.below(10000), r.below(10000), r.below(10000), r.below(10000))
            }),
            cities: US_CITIES.iter().map(|c| Str::from(*c)).collect(),
            states: US_STATES.iter().map(|c| Str::from(*c)).collect(),
            items: strs(&mut r, &mut |r| r.string(20)),
            descriptions: strs(&mut r, &mut |r| r.string(100)),
            extras: strs(&mut r, &mut |r| {
                let len = 40 + r.below(60) as usize;
                (0..len).map(|_| (b'a' + r.below(26) as u8) as char).collect()
            }),
            channels,
        }
    }
}

impl Pools {
    fn price(&self, r: &mut Rng) -> u64 {
        self.prices[r.below(PRICES as u64) as usize]
    }
}

fn pick<T: Clone>(v: &[T], r: &mut Rng) -> T {
    v[r.below(v.len() as u64) as usize].clone()
}

/// The events of one worker, in time order.
pub struct Generator {
    config: GeneratorConfig,
    pools: Arc<Pools>,
    /// Next event number.
    next: u64,
    /// Blocks of 50 between this worker's blocks.
    stride: u64,
}

impl Generator {
    /// The generator of worker `index` of `peers`.
    pub fn for_worker(config: &GeneratorConfig, index: usize, peers: usize) -> Generator {
        Generator {
            config: config.clone(),
            pools: Arc::new(Pools::new(config.seed)),
            next: index as u64 * PROPORTION,
            stride: peers.max(1) as u64,
        }
    }

    fn timestamp(&self, n: u64) -> i64 {
        self.config.base_time + ((n as u128 * 1000) / self.config.rate as u128) as i64
    }

    /// Where this worker's share is: the number of its next event.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Continue from a [`position`](Self::position) of the same share.
    pub fn seek(&mut self, next: u64) {
        self.next = next;
    }

    /// The event time of the next event, or `None` when done.
    pub fn next_timestamp(&self) -> Option<i64> {
        (self.next < self.config.events).then(|| self.timestamp(self.next))
    }

    /// Event number `n`.
    pub fn event(&self, n: u64) -> Event {
        let mut r = Rng::for_event(self.config.seed, n);
        let p = &self.pools;
        let t = self.timestamp(n);
        let epoch = n / PROPORTION;
        let offset = n % PROPORTION;
        let last_person = epoch; // people so far, minus one
        let random_person = |r: &mut Rng| {
            let people = last_person + 1;
            let active = people.min(ACTIVE_PEOPLE);
            people - active + r.below(active + ID_LEAD) + FIRST_ID
        };
        if offset < PERSONS {
            Event::Person(Person {
                id: last_person + FIRST_ID,
                name: pick(&p.names, &mut r),
                email_address: pick(&p.emails, &mut r),
                credit_card: pick(&p.cards, &mut r),
                city: pick(&p.cities, &mut r),
                state: pick(&p.states, &mut r),
                date_time: t,
                extra: pick(&p.extras, &mut r),
            })
        } else if offset < PERSONS + AUCTIONS {
            let last_auction = epoch * AUCTIONS + offset - PERSONS;
            let seller =
                if r.below(4) > 0 { (last_person / HOT_BATCH) * HOT_BATCH + FIRST_ID } else { random_person(&mut r) };
            let initial_bid = p.price(&mut r);
            let horizon = self.timestamp(n + IN_FLIGHT_AUCTIONS * PROPORTION / AUCTIONS) - t;
            Event::Auction(Auction {
                id: last_auction + FIRST_ID,
                item_name: pick(&p.items, &mut r),
                description: pick(&p.descriptions, &mut r),
                initial_bid,
                reserve: initial_bid + p.price(&mut r),
                date_time: t,
                expires: t + 1 + r.below((horizon * 2).max(1) as u64) as i64,
                seller,
                category: 10 + r.below(5),
                extra: pick(&p.extras, &mut r),
            })
        } else {
            let last_auction = epoch * AUCTIONS + AUCTIONS - 1;
            let auction = if r.below(2) > 0 {
                (last_auction / HOT_BATCH) * HOT_BATCH
            } else {
                let min = last_auction.saturating_sub(IN_FLIGHT_AUCTIONS);
                min + r.below(last_auction - min + 1 + ID_LEAD)
            } + FIRST_ID;
            let bidder = if r.below(4) > 0 {
                (last_person / HOT_BATCH) * HOT_BATCH + 1 + FIRST_ID
            } else {
                random_person(&mut r)
            };
            let price = p.price(&mut r);
            let (channel, url) = if r.below(2) > 0 {
                pick(&p.channels[..HOT_CHANNELS.len()], &mut r)
            } else {
                pick(&p.channels, &mut r)
            };
            Event::Bid(Bid { auction, bidder, price, channel, url, date_time: t, extra: pick(&p.extras, &mut r) })
        }
    }

    /// Make up to `max` of this worker's next events.
    pub fn fill(&mut self, max: usize, f: impl FnMut(Event)) {
        self.fill_until(max, i64::MAX, f)
    }

    /// Make up to `max` of this worker's next events, none after event
    /// time `until`.
    pub fn fill_until(&mut self, max: usize, until: i64, mut f: impl FnMut(Event)) {
        for _ in 0..max {
            if self.next >= self.config.events || self.timestamp(self.next) > until {
                return;
            }
            f(self.event(self.next));
            self.next += 1;
            if self.next % PROPORTION == 0 {
                self.next += (self.stride - 1) * PROPORTION;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(config: &GeneratorConfig, peers: usize) -> Vec<Event> {
        let mut v = Vec::new();
        for i in 0..peers {
            let mut g = Generator::for_worker(config, i, peers);
            let mut last = i64::MIN;
            while g.next_timestamp().is_some() {
                g.fill(37, |e| {
                    assert!(e.date_time() >= last, "time order per worker");
                    last = e.date_time();
                    v.push(e);
                });
            }
        }
        v.sort_by_key(|e| (e.date_time(), format!("{e:?}")));
        v
    }

    #[test]
    fn same_events_whatever_the_workers() {
        let c = GeneratorConfig::new(5_003);
        let one = all(&c, 1);
        assert_eq!(one.len(), 5_003);
        assert_eq!(all(&c, 3), one);
        let bids = one.iter().filter(|e| matches!(e, Event::Bid(_))).count();
        let people = one.iter().filter(|e| matches!(e, Event::Person(_))).count();
        assert_eq!((people, bids), (101, 5_003 - 101 - 3 * 100 - 2));
    }

    #[test]
    fn model_ids_and_times() {
        let c = GeneratorConfig::new(100);
        let g = Generator::for_worker(&c, 0, 1);
        let Event::Person(p) = g.event(50) else { panic!("event 50 is a person") };
        assert_eq!((p.id, p.date_time), (1001, 1_436_918_400_005));
        let Event::Auction(a) = g.event(53) else { panic!("event 53 is an auction") };
        assert_eq!(a.id, 1005);
        assert!(a.expires > a.date_time && (10..15).contains(&a.category));
        let Event::Bid(b) = g.event(99) else { panic!("event 99 is a bid") };
        assert!(b.auction <= 1005 + ID_LEAD && b.price >= 100);
    }

    /// What a live split reads at a moment: the events up to it; in all,
    /// every event once.
    #[test]
    fn fill_until_stops_at_the_given_time() {
        let c = GeneratorConfig::new(1_000); // 10 events per millisecond
        let mut g = Generator::for_worker(&c, 0, 1);
        let mut early = Vec::new();
        g.fill_until(usize::MAX, c.base_time + 9, |e| early.push(e));
        assert_eq!(early.len(), 100, "the events of milliseconds 0 to 9");
        assert_eq!(g.next_timestamp(), Some(c.base_time + 10));
        g.fill_until(usize::MAX, c.base_time - 1, |e| early.push(e));
        assert_eq!(early.len(), 100, "nothing before the next event's time");
        g.fill_until(usize::MAX, i64::MAX, |e| early.push(e));
        early.sort_by_key(|e| (e.date_time(), format!("{e:?}")));
        assert_eq!(early, all(&c, 1), "every event once");
    }

    #[test]
    fn bad_config() {
        assert!(GeneratorConfig { rate: 0, ..GeneratorConfig::new(1) }.validate().is_err());
        assert!(GeneratorConfig { base_time: i64::MAX - 5, ..GeneratorConfig::new(1) }.validate().is_err());
    }
}
