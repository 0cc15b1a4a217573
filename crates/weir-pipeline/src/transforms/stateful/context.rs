//! What a [`StatefulDoFn`] sees during one call: its key, window and time,
//! its state cells, its timer requests and its output.

use super::*;

pub(super) struct TimerRequest {
    pub(super) family: Name,
    pub(super) tag: String,
    pub(super) domain: TimeDomain,
    /// None: clear.
    pub(super) set: Option<(Timestamp, Timestamp)>,
}

/// What a [`StatefulDoFn`] sees: its key, window and time, its state, its
/// timers and its output.
pub struct StateContext<'a, K, O> {
    pub(super) key: &'a K,
    pub(super) window: Window,
    pub(super) timestamp: Timestamp,
    /// The output watermark hold of the firing timer (for relative
    /// processing-time timers and output checks).
    pub(super) hold: Timestamp,
    pub(super) processing_time: Timestamp,
    pub(super) gc: Timestamp,
    pub(super) cells: &'a mut Cells,
    pub(super) timers: &'a mut Vec<TimerRequest>,
    pub(super) out: &'a mut Vec<WindowedValue<O>>,
    pub(super) tagged: &'a mut [(Arc<str>, Box<dyn TaggedBuffer>)],
    pub(super) error: &'a mut Option<String>,
    pub(super) sides: SideInputs<'a>,
}

impl<K, O: Data> StateContext<'_, K, O> {
    /// The key.
    pub fn key(&self) -> &K {
        self.key
    }
    /// The window.
    pub fn window(&self) -> Window {
        self.window
    }
    /// The element's timestamp, or the firing timer's output timestamp.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }
    /// Current processing time.
    pub fn processing_time(&self) -> Timestamp {
        self.processing_time
    }
    /// Emit with the current timestamp and window.
    pub fn output(&mut self, value: O) {
        self.out.push(WindowedValue::new(value, self.timestamp, self.window, weir_model::PaneInfo::NO_FIRING));
    }
    /// Emit with another timestamp: it must be valid and not before the
    /// current element's (or timer's) timestamp.
    pub fn output_with_timestamp(&mut self, value: O, t: Timestamp) {
        if t < self.timestamp || Timestamp::element(t.millis()).is_err() {
            self.fail(format!("cannot output with timestamp {t}: it must be valid and not before {}", self.timestamp));
            return;
        }
        self.out.push(WindowedValue::new(value, t, self.window, weir_model::PaneInfo::NO_FIRING));
    }
    /// Emit to an additional output declared with
    /// [`par_do_stateful_with_outputs`](StatefulExt::par_do_stateful_with_outputs),
    /// with the current timestamp and window (Flink's side outputs: an
    /// alert beside the main stream, say).
    pub fn output_to<T: Data>(&mut self, tag: &OutputTag<T>, value: T) {
        let v = WindowedValue::new(value, self.timestamp, self.window, weir_model::PaneInfo::NO_FIRING);
        match self.tagged.iter_mut().find(|(id, _)| **id == *tag.id()) {
            Some((_, buf)) => buf.as_any().downcast_mut::<Vec<WindowedValue<T>>>().expect("tag type").push(v),
            None => {
                self.error.get_or_insert(format!("output tag '{}' was not declared", tag.id()));
            }
        }
    }
    /// Every value of a side input declared with
    /// [`par_do_stateful_with_side_inputs`](StatefulExt::par_do_stateful_with_side_inputs),
    /// in the side window this element's window maps to. Side inputs are
    /// read in [`process`](StatefulDoFn::process) only, as in Beam: reading
    /// one in a timer ends the job with a message naming the view.
    pub fn side_list<T: Data>(&self, view: &SideInput<T>) -> &[T] {
        self.sides.values(view)
    }
    /// The single value of a side input, like
    /// [`ProcessContext::side_singleton`](crate::ProcessContext::side_singleton).
    pub fn side_singleton<T: Data>(&self, view: &SideInput<T>) -> Result<&T, String> {
        self.sides.singleton(view)
    }
    /// A side input as a map with unique keys, like
    /// [`ProcessContext::side_map`](crate::ProcessContext::side_map).
    pub fn side_map<MK: Key, MV: Data>(&self, view: &SideInput<(MK, MV)>) -> Result<&HashMap<MK, MV>, String> {
        self.sides.map(view)
    }
    /// A side input as a multimap, like
    /// [`ProcessContext::side_multimap`](crate::ProcessContext::side_multimap).
    pub fn side_multimap<MK: Key, MV: Data>(&self, view: &SideInput<(MK, MV)>) -> &HashMap<MK, Vec<MV>> {
        self.sides.multimap(view)
    }
    /// Stop the pipeline with an error naming this transform.
    pub fn fail(&mut self, message: impl Into<String>) {
        self.error.get_or_insert(message.into());
    }

    pub(super) fn cell<T: Serialize + DeserializeOwned + Send + 'static>(
        &mut self,
        name: &'static str,
    ) -> Option<&mut T> {
        let slot = self.cells.get_mut(name)?;
        if let Cell::Encoded(bytes) = slot {
            match bincode::deserialize::<T>(bytes) {
                Ok(v) => *slot = Cell::typed(v),
                Err(e) => {
                    self.error.get_or_insert(format!(
                        "state '{name}' cannot be restored as {}: {e}",
                        std::any::type_name::<T>()
                    ));
                    return None;
                }
            }
        }
        let Cell::Typed(typed) = slot else { return None };
        match typed.as_any_mut().downcast_mut::<T>() {
            Some(v) => Some(v),
            None => {
                self.error.get_or_insert(format!("state '{name}' is declared with two different types"));
                None
            }
        }
    }

    pub(super) fn cell_or_insert<T: Serialize + DeserializeOwned + Send + 'static>(
        &mut self,
        name: &'static str,
        init: impl FnOnce() -> T,
    ) -> Option<&mut T> {
        if !self.cells.contains_key(name) {
            self.cells.insert(Cow::Borrowed(name), Cell::typed(init()));
        }
        self.cell::<T>(name)
    }

    pub(super) fn set_cell<T: Serialize + Send + 'static>(&mut self, name: &'static str, v: T) {
        self.cells.insert(Cow::Borrowed(name), Cell::typed(v));
    }

    pub(super) fn clear_cell(&mut self, name: &'static str) {
        self.cells.remove(name);
    }
}
