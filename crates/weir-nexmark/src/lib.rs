//! # weir-nexmark
//!
//! NEXMark, the standard benchmark of stream processors, in Weir: the event
//! model ([`Event`]: people, auctions, bids), a JSON-lines file source that
//! every worker reads in parallel, an in-process [`Generator`], the queries
//! ([`queries`]) written with Weir's public pipeline API, and the canonical
//! CSV output that makes results comparable by sha256 with Flink's, Beam's
//! and Bytewax's (`../shared/nexmark/README.md`).
//!
//! ```
//! use weir_nexmark::{read_events, GeneratorConfig, Input, Query};
//! use weir_pipeline::Pipeline;
//! let p = Pipeline::new();
//! let (events, _dead) = read_events(&p, &Input::Generated(GeneratorConfig::new(20_000))).unwrap();
//! let rows = Query::Q5.build(&events);
//! p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
//! let buffers = rows.take_buffers().unwrap();
//! assert!(!weir_nexmark::sorted_lines(&buffers).is_empty());
//! ```

#![warn(missing_docs)]

pub mod csv;
pub mod generator;
pub mod model;
pub mod queries;
pub mod source;

pub use csv::{sorted_lines, CsvField, CsvOutput, CsvRow, CsvSinkExt, Milli, Raw};
pub use generator::{Generator, GeneratorConfig};
pub use model::{Auction, Bid, Event, Person, Str, MAX_PRICE};
pub use queries::Query;
pub use source::{read_events, read_events_with, Input, ReadOptions, OUT_OF_ORDERNESS, SOURCE_NAME};

/// What can go wrong in NEXMark's building blocks.
#[derive(Debug, thiserror::Error)]
pub enum NexmarkError {
    /// A line that is not a NEXMark event.
    #[error("not a NEXMark event: {0}")]
    BadEvent(String),
    /// Invalid parameters.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The input could not be opened.
    #[error(transparent)]
    Input(#[from] weir_io::IoError),
}
