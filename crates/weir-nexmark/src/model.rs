//! The NEXMark event model: people, auctions and bids, and their JSON-lines
//! form (`../shared/nexmark/README.md`: one event per line,
//! `{"event_type":N,"person":…,"auction":…,"bid":…}` with exactly one
//! non-null object).

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use weir_model::Timestamp;

use crate::NexmarkError;

/// An immutable, cheaply cloned string (event fields are read, never changed).
pub type Str = Arc<str>;

/// The largest price an event may carry (10^15, in cents): every query's
/// arithmetic on prices (`price × 908` included) stays within `u64`.
pub const MAX_PRICE: u64 = 1_000_000_000_000_000;

fn arc_str<'de, D: Deserializer<'de>>(d: D) -> Result<Str, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Str;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Str, E> {
            Ok(Str::from(s))
        }
    }
    d.deserialize_str(V)
}

/// A person who sells or bids.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// Unique id.
    pub id: u64,
    /// Full name.
    #[serde(deserialize_with = "arc_str")]
    pub name: Str,
    /// E-mail address.
    #[serde(deserialize_with = "arc_str")]
    pub email_address: Str,
    /// Credit card number.
    #[serde(deserialize_with = "arc_str")]
    pub credit_card: Str,
    /// City.
    #[serde(deserialize_with = "arc_str")]
    pub city: Str,
    /// US state.
    #[serde(deserialize_with = "arc_str")]
    pub state: Str,
    /// Event time, epoch milliseconds.
    pub date_time: i64,
    /// Padding.
    #[serde(deserialize_with = "arc_str")]
    pub extra: Str,
}

/// An item put up for auction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Auction {
    /// Unique id.
    pub id: u64,
    /// Item name.
    #[serde(deserialize_with = "arc_str")]
    pub item_name: Str,
    /// Description.
    #[serde(deserialize_with = "arc_str")]
    pub description: Str,
    /// Initial bid, cents.
    pub initial_bid: u64,
    /// Reserve price, cents.
    pub reserve: u64,
    /// Event time (opening), epoch milliseconds.
    pub date_time: i64,
    /// Closing time, epoch milliseconds.
    pub expires: i64,
    /// The seller's person id.
    pub seller: u64,
    /// Category, 10..=14.
    pub category: u64,
    /// Padding.
    #[serde(deserialize_with = "arc_str")]
    pub extra: Str,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    /// The auction's id.
    pub auction: u64,
    /// The bidder's person id.
    pub bidder: u64,
    /// Price, cents.
    pub price: u64,
    /// Channel the bid came through.
    #[serde(deserialize_with = "arc_str")]
    pub channel: Str,
    /// URL of the bid.
    #[serde(deserialize_with = "arc_str")]
    pub url: Str,
    /// Event time, epoch milliseconds.
    pub date_time: i64,
    /// Padding.
    #[serde(deserialize_with = "arc_str")]
    pub extra: Str,
}

/// One NEXMark event.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Event {
    /// A new person.
    Person(Person),
    /// A new auction.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

#[derive(Deserialize)]
struct RawEvent {
    event_type: u8,
    person: Option<Person>,
    auction: Option<Auction>,
    bid: Option<Bid>,
}

impl Event {
    /// The event time, epoch milliseconds.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The event time as a Weir timestamp (checked to be in range).
    pub fn timestamp(&self) -> Result<Timestamp, NexmarkError> {
        Timestamp::element(self.date_time())
            .map_err(|e| NexmarkError::BadEvent(format!("dateTime {}: {e}", self.date_time())))
    }

    /// Parse one JSON line.
    ///
    /// ```
    /// use weir_nexmark::Event;
    /// let line = br#"{"event_type":2,"person":null,"auction":null,"bid":{"auction":1000,"bidder":1001,"price":1234,"channel":"Google","url":"https://x","dateTime":1436918400000,"extra":""}}"#;
    /// let Event::Bid(b) = Event::from_json(line).unwrap() else { panic!() };
    /// assert_eq!((b.auction, b.price, &*b.channel), (1000, 1234, "Google"));
    /// assert!(Event::from_json(br#"{"event_type":1,"person":null,"auction":null,"bid":null}"#).is_err());
    /// ```
    pub fn from_json(line: &[u8]) -> Result<Event, NexmarkError> {
        let raw: RawEvent = serde_json::from_slice(line).map_err(|e| NexmarkError::BadEvent(e.to_string()))?;
        let event = match (raw.event_type, raw.person, raw.auction, raw.bid) {
            (0, Some(p), None, None) => Event::Person(p),
            (1, None, Some(a), None) => Event::Auction(a),
            (2, None, None, Some(b)) => Event::Bid(b),
            (t, p, a, b) => {
                return Err(NexmarkError::BadEvent(format!(
                    "event_type {t} with person {}, auction {}, bid {}: expected 0, 1 or 2 with exactly the \
                     matching object",
                    if p.is_some() { "set" } else { "null" },
                    if a.is_some() { "set" } else { "null" },
                    if b.is_some() { "set" } else { "null" },
                )))
            }
        };
        event.validate()?;
        Ok(event)
    }

    /// Check what the queries compute with: every time (`dateTime`, an
    /// auction's `expires`) within the global window, where timers can be
    /// set; ids that fit `i64`; prices up to [`MAX_PRICE`], so that no
    /// query's arithmetic overflows (`price × 908`, ranks, sums).
    pub fn validate(&self) -> Result<(), NexmarkError> {
        let bad = |what: String| Err(NexmarkError::BadEvent(what));
        let time = |name: &str, t: i64| -> Result<(), NexmarkError> {
            let usable = Timestamp::MIN.millis() < t && t <= Timestamp::END_OF_GLOBAL_WINDOW.millis();
            if usable {
                Ok(())
            } else {
                bad(format!(
                    "{name} {t} is outside the usable range of times ({} to {} ms)",
                    Timestamp::MIN.millis() + 1,
                    Timestamp::END_OF_GLOBAL_WINDOW.millis()
                ))
            }
        };
        let id = |name: &str, v: u64| -> Result<(), NexmarkError> {
            if v <= i64::MAX as u64 {
                Ok(())
            } else {
                bad(format!("{name} {v} is larger than the largest id ({})", i64::MAX))
            }
        };
        let price = |name: &str, v: u64| -> Result<(), NexmarkError> {
            if v <= MAX_PRICE {
                Ok(())
            } else {
                bad(format!("{name} {v} is larger than the largest price ({MAX_PRICE})"))
            }
        };
        time("dateTime", self.date_time())?;
        match self {
            Event::Person(p) => id("person id", p.id),
            Event::Auction(a) => {
                time("expires", a.expires)?;
                id("auction id", a.id)?;
                id("seller", a.seller)?;
                id("category", a.category)?;
                price("initialBid", a.initial_bid)?;
                price("reserve", a.reserve)
            }
            Event::Bid(b) => {
                id("auction", b.auction)?;
                id("bidder", b.bidder)?;
                price("price", b.price)
            }
        }
    }

    /// The bid, if this is one.
    pub fn into_bid(self) -> Option<Bid> {
        match self {
            Event::Bid(b) => Some(b),
            _ => None,
        }
    }

    /// The auction, if this is one.
    pub fn into_auction(self) -> Option<Auction> {
        match self {
            Event::Auction(a) => Some(a),
            _ => None,
        }
    }

    /// The person, if this is one.
    pub fn into_person(self) -> Option<Person> {
        match self {
            Event::Person(p) => Some(p),
            _ => None,
        }
    }
}
