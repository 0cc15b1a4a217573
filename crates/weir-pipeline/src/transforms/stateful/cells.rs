//! The cell store: the state cells of each (key, window), typed in memory
//! or encoded until first read.

use super::*;

/// A state cell: typed in memory, or bincode bytes (restored from a snapshot)
/// until the DoFn first reads it with its declared type.
pub(super) enum Cell {
    Typed(Box<dyn TypedCell>),
    Encoded(Vec<u8>),
}

pub(super) trait TypedCell: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn encode(&self) -> Vec<u8>;
}

impl<T: Serialize + Send + 'static> TypedCell for T {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("serializing a state cell into memory cannot fail")
    }
}

impl Cell {
    pub(super) fn typed<T: Serialize + Send + 'static>(v: T) -> Cell {
        Cell::Typed(Box::new(v))
    }
    pub(super) fn encode(&self) -> Vec<u8> {
        match self {
            Cell::Typed(c) => c.encode(),
            Cell::Encoded(bytes) => bytes.clone(),
        }
    }
}

/// A cell's or timer family's name: borrowed from the declared constant
/// handle, or owned when it was restored from a snapshot (nothing leaks).
pub(super) type Name = Cow<'static, str>;

/// The cells of one (key, window), by name.
pub(super) type Cells = HashMap<Name, Cell>;
