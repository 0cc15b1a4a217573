//! Type-erased batches of windowed values: what flows along every edge of a
//! pipeline, whatever the runner. A batch is typed while it stays in a
//! process and encoded (bincode) when it has to cross one.

use std::any::Any;
use std::io::Write;

use crate::data::{Data, WindowedValue};
use crate::error::PipelineError;

trait ErasedVec: Send {
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    fn encode(&self, out: &mut dyn Write);
    fn encoded_len(&self) -> usize;
    fn type_name(&self) -> &'static str;
    fn clone_box(&self) -> Box<dyn ErasedVec>;
}

impl<T: Data> ErasedVec for Vec<WindowedValue<T>> {
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
    fn encode(&self, out: &mut dyn Write) {
        bincode::serialize_into(out, self).expect("serializing a batch into memory cannot fail");
    }
    fn encoded_len(&self) -> usize {
        bincode::serialized_size(self).expect("sizing a batch cannot fail") as usize
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn clone_box(&self) -> Box<dyn ErasedVec> {
        Box::new(self.clone())
    }
}

enum Payload {
    Empty,
    Typed { len: usize, data: Box<dyn ErasedVec> },
    Encoded { len: usize, bytes: Vec<u8> },
}

/// A batch of `WindowedValue<T>` for some `T` known to the producer and the
/// consumer of an edge, not to the runner.
///
/// ```
/// use weir_runtime::{Batch, WindowedValue};
/// use weir_model::Timestamp;
/// let b = Batch::new(vec![WindowedValue::in_global(7u32, Timestamp::from_millis(1))]);
/// let wire = Batch::from_encoded(&b.encode()).unwrap();
/// assert_eq!(wire.len(), 1);
/// assert_eq!(wire.into_vec::<u32>().unwrap()[0].value, 7);
/// // What cannot be decoded is an error, not a panic.
/// assert!(Batch::from_encoded(&[1, 0]).is_err());
/// assert!(Batch::from_encoded(&[1, 0, 0, 0, 0, 0, 0, 0, 9]).unwrap().into_vec::<String>().is_err());
/// ```
pub struct Batch(Payload);

impl Clone for Batch {
    fn clone(&self) -> Self {
        Batch(match &self.0 {
            Payload::Empty => Payload::Empty,
            Payload::Typed { len, data } => Payload::Typed { len: *len, data: data.clone_box() },
            Payload::Encoded { len, bytes } => Payload::Encoded { len: *len, bytes: bytes.clone() },
        })
    }
}

impl Default for Batch {
    fn default() -> Self {
        Batch(Payload::Empty)
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Payload::Empty => f.write_str("Batch(empty)"),
            Payload::Typed { len, data } => write!(f, "Batch({len} x {})", data.type_name()),
            Payload::Encoded { len, bytes } => write!(f, "Batch({len} encoded, {} bytes)", bytes.len()),
        }
    }
}

impl Batch {
    /// A batch of values.
    pub fn new<T: Data>(values: Vec<WindowedValue<T>>) -> Batch {
        if values.is_empty() {
            Batch(Payload::Empty)
        } else {
            Batch(Payload::Typed { len: values.len(), data: Box::new(values) })
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match &self.0 {
            Payload::Empty => 0,
            Payload::Typed { len, .. } | Payload::Encoded { len, .. } => *len,
        }
    }

    /// Whether the batch arrived encoded (from another process).
    pub fn is_encoded(&self) -> bool {
        matches!(self.0, Payload::Encoded { .. })
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values. An error if the batch holds another type or does not
    /// decode: edges are typed when the pipeline is built, so either is a
    /// bug in Weir or a corrupted wire, reported as an internal error.
    pub fn into_vec<T: Data>(self) -> Result<Vec<WindowedValue<T>>, PipelineError> {
        match self.0 {
            Payload::Empty => Ok(Vec::new()),
            Payload::Typed { data, .. } => {
                let name = data.type_name();
                data.into_any().downcast::<Vec<WindowedValue<T>>>().map(|b| *b).map_err(|_| {
                    PipelineError::Internal(format!(
                        "edge type mismatch: batch of {name}, consumer expects {}",
                        std::any::type_name::<T>()
                    ))
                })
            }
            Payload::Encoded { bytes, len } => {
                let values: Vec<WindowedValue<T>> = bincode::deserialize(&bytes[8..]).map_err(|e| {
                    PipelineError::Internal(format!("undecodable batch for {}: {e}", std::any::type_name::<T>()))
                })?;
                if values.len() != len {
                    return Err(PipelineError::Internal(format!(
                        "a batch announced {len} values and holds {}",
                        values.len()
                    )));
                }
                Ok(values)
            }
        }
    }

    /// Size of [`encode`](Self::encode)'s output.
    pub fn encoded_len(&self) -> usize {
        8 + match &self.0 {
            Payload::Empty => 0,
            Payload::Typed { data, .. } => data.encoded_len(),
            Payload::Encoded { bytes, .. } => bytes.len() - 8,
        }
    }

    /// Write the wire form: the value count (u64, little endian), then the
    /// bincode encoding of the values.
    pub fn write_encoded(&self, out: &mut dyn Write) {
        out.write_all(&(self.len() as u64).to_le_bytes()).expect("writing to memory");
        match &self.0 {
            Payload::Empty => {}
            Payload::Typed { data, .. } => data.encode(out),
            Payload::Encoded { bytes, .. } => out.write_all(&bytes[8..]).expect("writing to memory"),
        }
    }

    /// The wire form as a vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.write_encoded(&mut v);
        v
    }

    /// A batch from its wire form; decoded lazily by its consumer.
    pub fn from_encoded(bytes: &[u8]) -> Result<Batch, PipelineError> {
        let Some(head) = bytes.get(..8) else {
            return Err(PipelineError::Internal(format!("a batch of {} bytes has no length", bytes.len())));
        };
        let len = u64::from_le_bytes(head.try_into().expect("8 bytes")) as usize;
        Ok(if len == 0 { Batch(Payload::Empty) } else { Batch(Payload::Encoded { len, bytes: bytes.to_vec() }) })
    }
}
