//! Element types and windowed values.

use std::fmt::Debug;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_model::{PaneInfo, Timestamp, Window};

/// What a `PCollection` may hold: cloneable, thread-safe, printable and
/// serializable (elements cross threads and processes). Implemented for every
/// such type.
pub trait Data: Clone + Send + Sync + Debug + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Sync + Debug + Serialize + DeserializeOwned + 'static> Data for T {}

/// What a grouping key may be: data that can be hashed, compared and ordered.
pub trait Key: Data + Hash + Eq + Ord {}
impl<T: Data + Hash + Eq + Ord> Key for T {}

/// An element with its event timestamp, its window and the pane it belongs to.
///
/// ```
/// use weir_runtime::WindowedValue;
/// use weir_model::{PaneInfo, Timestamp, Window};
/// let v = WindowedValue::in_global("hello", Timestamp::from_millis(5));
/// assert_eq!((v.window, v.pane), (Window::Global, PaneInfo::NO_FIRING));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowedValue<T> {
    /// The element.
    pub value: T,
    /// Its event timestamp.
    pub timestamp: Timestamp,
    /// Its window.
    pub window: Window,
    /// Its pane (`NO_FIRING` before any grouping).
    pub pane: PaneInfo,
}

impl<T> WindowedValue<T> {
    /// A value with all its attributes.
    pub fn new(value: T, timestamp: Timestamp, window: Window, pane: PaneInfo) -> Self {
        WindowedValue { value, timestamp, window, pane }
    }

    /// A value in the global window, not yet through any trigger.
    pub fn in_global(value: T, timestamp: Timestamp) -> Self {
        WindowedValue { value, timestamp, window: Window::Global, pane: PaneInfo::NO_FIRING }
    }

    /// The same timestamp, window and pane with another value.
    pub fn with_value<U>(&self, value: U) -> WindowedValue<U> {
        WindowedValue { value, timestamp: self.timestamp, window: self.window, pane: self.pane }
    }
}
