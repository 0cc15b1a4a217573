//! The runtime operator of `par_do_stateful`: the cells of every (key,
//! window), pending timers in event- and processing-time queues, the
//! multiset of timer output timestamps that holds the output watermark,
//! windows by expiry, the time-sorted buffer, and the snapshot format.

use super::*;
use weir_runtime::keyed::KeyedWriter;

/// (key, window, family, tag): a timer's identity.
type TimerKey<K> = (K, Window, Name, String);

/// A pending timer: (domain, firing time, output timestamp).
type TimerState = (TimeDomain, Timestamp, Timestamp);

/// An element waiting for the watermark (time-sorted input).
type Buffered<K, V> = (K, Window, V);

pub(super) struct StatefulOp<D: StatefulDoFn> {
    pub(super) dofn: D,
    pub(super) strategy: Arc<WindowingStrategy>,
    pub(super) sorted_input: bool,
    pub(super) cells: CellStore<D::Key>,
    /// Where the cells are kept.
    pub(super) backend: StateBackend,
    /// Cells over all (key, window)s, for the live counters.
    pub(super) live_cells: u64,
    /// Pending timers, ordered by identity so a window's timers are a range.
    pub(super) timers: BTreeMap<TimerKey<D::Key>, TimerState>,
    /// The pending timers by firing time, per domain (the model's
    /// timer-and-hold service, shared with the grouping).
    pub(super) queues: TimerQueues<TimerKey<D::Key>>,
    /// Output timestamps of pending timers (with multiplicity).
    pub(super) holds: Holds,
    /// Windows with state or timers, by expiration time (GC + 1 ms).
    pub(super) windows: BTreeSet<(Timestamp, D::Key, Window)>,
    /// Time-sorted input: elements by (timestamp, arrival sequence).
    pub(super) buffer: BTreeMap<(Timestamp, u64), Buffered<D::Key, D::Value>>,
    pub(super) next_seq: u64,
    pub(super) input_wm: Timestamp,
    pub(super) processing_time: Timestamp,
    /// Outputs of the current call to the operator, emitted as one batch.
    pub(super) out: Vec<WindowedValue<D::Out>>,
    /// The additional outputs' buffers, emitted on ports 1, 2, …
    pub(super) tagged: Vec<(Arc<str>, Box<dyn TaggedBuffer>)>,
    /// The additional outputs declared (to make a restored instance).
    pub(super) tags: Vec<ErasedTag>,
    /// The side inputs' values (input ports 1, 2, …).
    pub(super) sides: Vec<SideEntry>,
    /// The side inputs declared (to make a restored instance).
    pub(super) side_defs: Vec<ErasedSide>,
    /// Elements waiting for their side-input windows to be ready, in
    /// arrival order; they hold the watermark of timers and of the output.
    pub(super) waiting: Vec<WindowedValue<(D::Key, D::Value)>>,
    /// The earliest timestamp in `waiting` (MAX: none).
    pub(super) waiting_min: Timestamp,
    pub(super) worker: usize,
}

/// A pending timer: key, window, family, tag, domain, firing time, output timestamp.
type EncodedTimer<K> = (K, Window, String, String, TimeDomain, Timestamp, Timestamp);

/// The version of a [`StatefulOp`]'s snapshot: 2 added the format number
/// and the key group of each (key, window); 3 made it a
/// [`KeyedSnapshot`]: [`OpSnapshot`] (bincode) as its meta, and each
/// (key group, key, window)'s cells ([`StoredCells`], bincode) as its keys,
/// so that a checkpoint can store only the cells changed; 4 added the side
/// inputs' values and the elements waiting for them.
const SNAPSHOT_FORMAT: u32 = 4;

/// What a [`StatefulOp`] keeps besides its cells.
#[derive(Serialize, Deserialize)]
struct OpSnapshot<K, V> {
    /// [`SNAPSHOT_FORMAT`].
    format: u32,
    timers: Vec<EncodedTimer<K>>,
    windows: Vec<(Timestamp, K, Window)>,
    buffer: Vec<(Timestamp, u64, K, Window, V)>,
    next_seq: u64,
    input_wm: Timestamp,
    processing_time: Timestamp,
    /// Each side input's values (`side::encode_sides`).
    sides: Vec<Vec<u8>>,
    waiting: Vec<WindowedValue<(K, V)>>,
}

enum Call<'a, V> {
    Element(V),
    Timer(&'a TimerFiring<'a>),
    Expire,
}

impl<D: StatefulDoFn> StatefulOp<D> {
    /// An operator keeping its cells in memory.
    #[cfg(test)]
    pub(super) fn new(dofn: D, strategy: Arc<WindowingStrategy>, worker: usize) -> Self {
        Self::with_backend(dofn, strategy, worker, &StateBackend::Memory, &[], &[])
            .expect("a memory store cannot fail to open")
    }

    /// An operator keeping its cells in `backend`.
    pub(super) fn with_backend(
        dofn: D,
        strategy: Arc<WindowingStrategy>,
        worker: usize,
        backend: &StateBackend,
        tags: &[ErasedTag],
        sides: &[ErasedSide],
    ) -> Result<Self, PipelineError> {
        Ok(StatefulOp {
            sorted_input: dofn.requires_time_sorted_input(),
            dofn,
            strategy,
            cells: CellStore::open(backend)?,
            backend: backend.clone(),
            live_cells: 0,
            timers: BTreeMap::new(),
            queues: TimerQueues::new(),
            holds: Holds::default(),
            windows: BTreeSet::new(),
            buffer: BTreeMap::new(),
            next_seq: 0,
            input_wm: Timestamp::MIN,
            processing_time: Timestamp::MIN,
            out: Vec::new(),
            tagged: tags.iter().map(ErasedTag::instantiate).collect(),
            tags: tags.to_vec(),
            sides: sides.iter().map(ErasedSide::entry).collect(),
            side_defs: sides.to_vec(),
            waiting: Vec::new(),
            waiting_min: Timestamp::MAX,
            worker,
        })
    }

    fn gc(&self, w: &Window) -> Timestamp {
        w.gc_time(self.strategy.allowed_lateness)
    }

    fn call(
        &mut self,
        key: &D::Key,
        window: Window,
        ts: Timestamp,
        hold: Timestamp,
        what: Call<'_, D::Value>,
        cx: &mut OpContext<'_>,
    ) -> OpResult {
        let gc = self.gc(&window);
        let group = cx.key_groups.key_group(key_hash(key));
        let ck = (group, key.clone(), window);
        if !self.cells.contains(&ck) {
            // A window with state is always in `windows`; one without may
            // not be yet.
            self.windows.insert((gc.next(), key.clone(), window));
        }
        let mut requests = Vec::new();
        let mut error = None;
        let unreadable_in = match what {
            Call::Element(_) => None,
            Call::Timer(_) => Some("on_timer"),
            Call::Expire => Some("on_window_expiration"),
        };
        let sides = SideInputs { entries: &self.sides, window, unreadable_in };
        let cells = self.cells.cells(ck);
        let before = cells.len() as u64;
        {
            let mut scx = StateContext {
                key,
                window,
                timestamp: ts,
                hold,
                processing_time: self.processing_time,
                gc,
                cells,
                timers: &mut requests,
                out: &mut self.out,
                tagged: &mut self.tagged,
                error: &mut error,
                sides,
            };
            match what {
                Call::Element(v) => self.dofn.process(&mut scx, v),
                Call::Timer(t) => self.dofn.on_timer(&mut scx, t),
                Call::Expire => self.dofn.on_window_expiration(&mut scx),
            }
        }
        let after = cells.len() as u64;
        self.live_cells = self.live_cells + after - before;
        if after == 0 {
            self.cells.remove(&(group, key.clone(), window));
        }
        if let Some(e) = error {
            return Err(cx.error(e));
        }
        for r in requests {
            self.apply(key, window, r);
        }
        Ok(())
    }

    fn remove_timer(&mut self, k: &TimerKey<D::Key>) {
        if let Some((domain, target, output)) = self.timers.remove(k) {
            self.unindex_timer(k, domain, target, output);
        }
    }

    fn unindex_timer(&mut self, k: &TimerKey<D::Key>, domain: TimeDomain, target: Timestamp, output: Timestamp) {
        self.queues.remove(domain.model(), target, k.clone());
        self.holds.remove(output);
    }

    fn insert_timer(&mut self, k: TimerKey<D::Key>, (domain, target, output): TimerState) {
        self.queues.insert(domain.model(), target, k.clone());
        self.holds.add(output);
        self.timers.insert(k, (domain, target, output));
    }

    fn apply(&mut self, key: &D::Key, window: Window, r: TimerRequest) {
        let k: TimerKey<D::Key> = (key.clone(), window, r.family, r.tag);
        if let (Some((target, output)), Some(&(domain, was_target, was_output))) = (r.set, self.timers.get(&k)) {
            if domain == r.domain && was_target == target {
                // Set again for the same time (a DoFn that sets its timer
                // on every element): only the output timestamp may move.
                // The queue is left alone; taking the timer out and back in
                // would add an entry to its time each time.
                if was_output != output {
                    self.holds.remove(was_output);
                    self.holds.add(output);
                    self.timers.insert(k, (domain, target, output));
                }
                return;
            }
        }
        self.remove_timer(&k);
        if let Some((target, output)) = r.set {
            self.windows.insert((self.gc(&window).next(), key.clone(), window));
            self.insert_timer(k, (r.domain, target, output));
        }
    }

    /// The next buffered element that the watermark has released.
    fn next_released(&self) -> Option<Timestamp> {
        let (&(t, _), _) = self.buffer.first_key_value()?;
        (t + self.strategy.allowed_lateness < self.input_wm).then_some(t)
    }

    /// Release buffered elements and fire event-time timers before the input
    /// watermark, in timestamp order (an element before a timer at the same
    /// time).
    fn fire_event_time(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        loop {
            let element = self.next_released();
            let timer = self.queues.next_time(TimerDomain::EventTime).filter(|t| *t < self.input_wm);
            match (element, timer) {
                (Some(e), t) if t.is_none_or(|t| e <= t) => {
                    let ((ts, _), (key, window, value)) = self.buffer.pop_first().expect("a released element");
                    self.call(&key, window, ts, ts, Call::Element(value), cx)?;
                }
                (_, Some(_)) => self.fire_first(TimeDomain::EventTime, cx)?,
                _ => return Ok(()),
            }
        }
    }

    fn fire_processing_time(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        while self.queues.is_due(TimerDomain::ProcessingTime, self.processing_time) {
            self.fire_first(TimeDomain::ProcessingTime, cx)?;
        }
        Ok(())
    }

    fn fire_first(&mut self, domain: TimeDomain, cx: &mut OpContext<'_>) -> OpResult {
        let Some((target, k)) = self.queues.first(domain.model()).map(|(t, k)| (t, k.clone())) else { return Ok(()) };
        let (_, _, output) = self.timers[&k];
        self.remove_timer(&k);
        let (key, window, family, tag) = k;
        if domain == TimeDomain::ProcessingTime && self.gc(&window) < self.input_wm {
            return Ok(()); // a processing-time timer of an expired window is ignored
        }
        let firing = TimerFiring { family: &family, tag, domain, firing_timestamp: target, output_timestamp: output };
        self.call(&key, window, output, output, Call::Timer(&firing), cx)
    }

    fn expire(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        while let Some((at, key, window)) = self.windows.first().cloned() {
            if at >= self.input_wm {
                break;
            }
            self.call(&key, window, window.max_timestamp(), window.max_timestamp(), Call::Expire, cx)?;
            self.windows.remove(&(at, key.clone(), window));
            let at = (cx.key_groups.key_group(key_hash(&key)), key.clone(), window);
            self.live_cells -= self.cells.remove(&at) as u64;
            let lower = (key.clone(), window, Cow::Borrowed(""), String::new());
            let stale: Vec<TimerKey<D::Key>> = self
                .timers
                .range((Bound::Included(lower), Bound::Unbounded))
                .map(|(k, _)| k)
                .take_while(|k| k.0 == key && k.1 == window)
                .cloned()
                .collect();
            for k in stale {
                self.remove_timer(&k);
            }
        }
        Ok(())
    }

    /// An element whose side inputs (if any) are ready: processed now, or
    /// buffered for time-sorted input; dropped and counted if expired.
    fn accept(&mut self, v: WindowedValue<(D::Key, D::Value)>, cx: &mut OpContext<'_>) -> OpResult {
        if self.gc(&v.window) < self.input_wm {
            NodeCounters::add(&cx.counters.dropped_expired, 1);
            return Ok(());
        }
        let (k, value) = v.value;
        if !self.sorted_input {
            return self.call(&k, v.window, v.timestamp, v.timestamp, Call::Element(value), cx);
        }
        if v.timestamp + self.strategy.allowed_lateness < self.input_wm {
            // Its place in the sorted order has already passed.
            NodeCounters::add(&cx.counters.dropped_expired, 1);
            return Ok(());
        }
        self.buffer.insert((v.timestamp, self.next_seq), (k, v.window, value));
        self.next_seq += 1;
        Ok(())
    }

    /// Process the waiting elements whose side-input windows are ready, in
    /// arrival order.
    fn release_ready(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        if self.waiting.is_empty() {
            return Ok(());
        }
        let ready = take_ready(&mut self.waiting, &self.sides, cx.input_watermarks);
        self.waiting_min = self.waiting.iter().map(|v| v.timestamp).min().unwrap_or(Timestamp::MAX);
        for v in ready {
            self.accept(v, cx)?;
        }
        Ok(())
    }

    /// The watermark timers and expiry follow: the main input's, held at the
    /// earliest element still waiting for side inputs (so that it is
    /// processed before timers after it fire, as if it had arrived then).
    fn main_watermark(&self, cx: &OpContext<'_>) -> Timestamp {
        if self.sides.is_empty() {
            return cx.input_watermark();
        }
        let main = cx.input_watermarks.first().copied().unwrap_or(Timestamp::MAX);
        main.min(self.waiting_min)
    }

    fn flush(&mut self, cx: &mut OpContext<'_>) {
        let mut n = self.out.len() as u64;
        if !self.out.is_empty() {
            cx.out.emit(0, std::mem::take(&mut self.out));
        }
        for (port, (_, buf)) in self.tagged.iter_mut().enumerate() {
            n += buf.flush(port + 1, cx);
        }
        NodeCounters::add(&cx.counters.elements_out, n);
        cx.counters.publish_state(self.worker, self.live_cells, self.timers.len() as u64);
    }
}

impl<D: StatefulDoFn> Operator for StatefulOp<D> {
    fn process(&mut self, port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        // Elements are processed at the current processing time: timers due
        // before it fire first; relative timers use it.
        self.processing_time = self.processing_time.max(cx.processing_time);
        self.fire_processing_time(cx)?;
        if port > 0 {
            // Waiting elements become ready only as watermarks move: in
            // `advance`.
            self.sides[port - 1].add(batch)?;
        } else {
            let input = batch.into_vec::<(D::Key, D::Value)>()?;
            NodeCounters::add(&cx.counters.elements_in, input.len() as u64);
            let wms = cx.input_watermarks.to_vec();
            for v in input {
                if self.sides.is_empty() || sides_ready(&self.sides, &v.window, &wms) {
                    self.accept(v, cx)?;
                } else if self.gc(&v.window) < self.input_wm
                    || (self.sorted_input && v.timestamp + self.strategy.allowed_lateness < self.input_wm)
                {
                    // Certain to be dropped once ready: not kept waiting
                    // (it would hold every timer back meanwhile).
                    NodeCounters::add(&cx.counters.dropped_expired, 1);
                } else {
                    self.waiting_min = self.waiting_min.min(v.timestamp);
                    self.waiting.push(v);
                }
            }
        }
        // A failure of the state backend ends the job before anything
        // computed from missing state leaves the operator.
        if let Some(e) = self.cells.take_error() {
            return Err(e);
        }
        self.flush(cx);
        Ok(())
    }

    fn advance(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        self.processing_time = self.processing_time.max(cx.processing_time);
        self.fire_processing_time(cx)?;
        self.release_ready(cx)?;
        let wm = self.main_watermark(cx);
        if wm > self.input_wm {
            self.input_wm = wm;
            self.fire_event_time(cx)?;
            self.expire(cx)?;
        }
        if let Some(e) = self.cells.take_error() {
            return Err(e);
        }
        self.flush(cx);
        Ok(())
    }

    fn hold(&self) -> Timestamp {
        let timers = self.holds.min().unwrap_or(Timestamp::MAX);
        let buffered = self.buffer.first_key_value().map_or(Timestamp::MAX, |((t, _), _)| *t);
        timers.min(buffered).min(self.waiting_min)
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        self.queues.next_time(TimerDomain::ProcessingTime)
    }

    /// Every (key, window)'s cells and the rest as the meta (a
    /// [`KeyedSnapshot`], written key by key in the store's order).
    fn snapshot(&self) -> Result<Vec<u8>, PipelineError> {
        let mut out = KeyedWriter::new(&self.encode_meta()?);
        let (mut key, mut failed) = (Vec::new(), None);
        self.cells.for_each(&mut |at, cells| {
            key.clear();
            let named: Vec<(&str, Vec<u8>)> = cells.iter().map(|(n, c)| (n.as_ref(), c.encode())).collect();
            match (bincode::serialize_into(&mut key, at), bincode::serialize(&named)) {
                (Ok(()), Ok(v)) => out.push(&key, Some(&v)),
                (Err(e), _) | (_, Err(e)) => failed = Some(e),
            }
        });
        if let Some(e) = failed {
            return Err(PipelineError::Internal(format!("serializing a stateful operator's snapshot: {e}")));
        }
        if let Some(e) = self.cells.peek_error() {
            return Err(e);
        }
        Ok(out.finish())
    }

    /// A whole snapshot; the (key, window)s touched from now on are
    /// tracked for the next [`snapshot_changes`](Operator::snapshot_changes).
    fn snapshot_epoch(&mut self, _epoch: u64) -> Result<Vec<u8>, PipelineError> {
        self.cells.take_changed();
        self.snapshot()
    }

    /// The cells of the (key, window)s touched since the previous
    /// snapshot (`None`: no cells any more), and the rest whole.
    fn snapshot_changes(&mut self, _epoch: u64) -> Result<Option<Vec<u8>>, PipelineError> {
        let changes = self.cells.encoded_changes(&self.encode_meta()?);
        if let Some(e) = self.cells.peek_error() {
            return Err(e);
        }
        Ok(Some(changes))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), PipelineError> {
        let (snap, cells) = decode_snapshot(bytes)?;
        self.restore_snapshot(snap, cells)
    }

    /// With an LSM store, the whole snapshot is streamed from a consistent
    /// view of the cells by the checkpoint writer (state larger than memory).
    fn snapshot_epoch_streamed(
        &mut self,
        _epoch: u64,
    ) -> Result<Option<Box<dyn weir_runtime::SnapshotStream>>, PipelineError> {
        if !self.cells.spills() {
            return Ok(None);
        }
        self.cells.take_changed();
        let stream = self.cells.snapshot_stream(self.encode_meta()?);
        if let Some(e) = self.cells.peek_error() {
            return Err(e);
        }
        Ok(stream)
    }

    /// (Key, window) by (key, window) as the snapshot is read: cells larger
    /// than memory go back into the LSM store without being held whole.
    fn restore_keyed(&mut self, snapshot: &mut weir_runtime::keyed::KeyedReader<'_>) -> Result<bool, PipelineError> {
        let mut op = self.restored_without_cells(decode_meta(snapshot.meta())?)?;
        while let Some((k, v)) = snapshot.next_entry()? {
            let at: Address<D::Key> = bincode::deserialize(k).map_err(cannot_restore)?;
            let stored: StoredCells = bincode::deserialize(v).map_err(cannot_restore)?;
            op.live_cells += op.cells.insert_stored(at, stored) as u64;
        }
        *self = op;
        match self.cells.take_error() {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    /// The cells, timers, windows and time-sorted input of the keys this
    /// worker owns, from every old instance; the earliest input watermark
    /// and processing time of any. Buffered elements are renumbered in
    /// (timestamp, old instance, old number) order.
    fn restore_rescaled(&mut self, from: &Rescale<'_>) -> Result<(), PipelineError> {
        let mut merged: Option<OpSnapshot<D::Key, D::Value>> = None;
        let mut cells = Vec::new();
        for bytes in from.snapshots {
            let (mut snap, mut owned) = decode_snapshot::<D::Key, D::Value>(bytes)?;
            owned.retain(|((g, ..), _)| from.owns_group(*g));
            cells.append(&mut owned);
            snap.timers.retain(|t| from.owns(key_hash(&t.0)));
            snap.windows.retain(|w| from.owns(key_hash(&w.1)));
            snap.buffer.retain(|b| from.owns(key_hash(&b.2)));
            // Every instance received every side-input value (broadcast):
            // the first instance's are everyone's.
            snap.waiting.retain(|v| from.owns(key_hash(&v.value.0)));
            merged = Some(match merged {
                None => snap,
                Some(mut m) => {
                    m.timers.append(&mut snap.timers);
                    m.windows.append(&mut snap.windows);
                    m.buffer.append(&mut snap.buffer);
                    m.waiting.append(&mut snap.waiting);
                    m.input_wm = m.input_wm.min(snap.input_wm);
                    m.processing_time = m.processing_time.min(snap.processing_time);
                    m
                }
            });
        }
        let Some(mut snap) = merged else { return Ok(()) };
        // A stable sort by timestamp keeps each old instance's order.
        snap.buffer.sort_by_key(|b| b.0);
        for (seq, b) in snap.buffer.iter_mut().enumerate() {
            b.1 = seq as u64;
        }
        snap.next_seq = snap.buffer.len() as u64;
        self.restore_snapshot(snap, cells)
    }
}

/// The cells of one (key, window), as a snapshot holds them.
type SnapCells<K> = (Address<K>, StoredCells);

fn cannot_restore(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Runner(format!("stateful operator: cannot restore a snapshot: {e}"))
}

/// A stateful operator's snapshot decoded: the rest, and the cells.
type Decoded<K, V> = (OpSnapshot<K, V>, Vec<SnapCells<K>>);

/// Everything of a snapshot but the cells, checked for its format.
fn decode_meta<K: Key, V: Data>(meta: &[u8]) -> Result<OpSnapshot<K, V>, PipelineError> {
    // The format number comes first, so that an older layout is named as
    // such rather than failing to decode.
    let format: u32 = bincode::deserialize(meta).map_err(cannot_restore)?;
    if format != SNAPSHOT_FORMAT {
        return Err(PipelineError::Runner(format!(
            "stateful operator: a snapshot of format {format}, this Weir reads format {SNAPSHOT_FORMAT}"
        )));
    }
    bincode::deserialize(meta).map_err(cannot_restore)
}

fn decode_snapshot<K: Key, V: Data>(bytes: &[u8]) -> Result<Decoded<K, V>, PipelineError> {
    let keyed = KeyedSnapshot::decode(bytes)?;
    let snap = decode_meta(&keyed.meta)?;
    let mut cells = Vec::with_capacity(keyed.keys.len());
    for (k, v) in keyed.keys {
        let v = v.ok_or_else(|| cannot_restore("a whole snapshot with removed cells"))?;
        cells.push((
            bincode::deserialize(&k).map_err(cannot_restore)?,
            bincode::deserialize(&v).map_err(cannot_restore)?,
        ));
    }
    Ok((snap, cells))
}

impl<D: StatefulDoFn> StatefulOp<D> {
    /// Everything but the cells.
    fn encode_meta(&self) -> Result<Vec<u8>, PipelineError> {
        let snap = OpSnapshot::<D::Key, D::Value> {
            format: SNAPSHOT_FORMAT,
            timers: self
                .timers
                .iter()
                .map(|((k, w, f, tag), (d, t, o))| (k.clone(), *w, f.to_string(), tag.clone(), *d, *t, *o))
                .collect(),
            windows: self.windows.iter().cloned().collect(),
            buffer: self.buffer.iter().map(|((t, s), (k, w, v))| (*t, *s, k.clone(), *w, v.clone())).collect(),
            next_seq: self.next_seq,
            input_wm: self.input_wm,
            processing_time: self.processing_time,
            sides: encode_sides(&self.sides)?,
            waiting: self.waiting.clone(),
        };
        bincode::serialize(&snap)
            .map_err(|e| PipelineError::Internal(format!("serializing a stateful operator's snapshot: {e}")))
    }

    fn restore_snapshot(&mut self, snap: OpSnapshot<D::Key, D::Value>, cells: Vec<SnapCells<D::Key>>) -> OpResult {
        let mut op = self.restored_without_cells(snap)?;
        for (at, stored) in cells {
            op.live_cells += op.cells.insert_stored(at, stored) as u64;
        }
        *self = op;
        match self.cells.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A fresh instance with everything of `snap` but the cells.
    fn restored_without_cells(&self, snap: OpSnapshot<D::Key, D::Value>) -> Result<Self, PipelineError> {
        let mut op = StatefulOp::with_backend(
            self.dofn.clone(),
            self.strategy.clone(),
            self.worker,
            &self.backend,
            &self.tags,
            &self.side_defs,
        )?;
        for (k, w, f, tag, d, t, o) in snap.timers {
            op.insert_timer((k, w, Cow::Owned(f), tag), (d, t, o));
        }
        op.windows = snap.windows.into_iter().collect();
        op.buffer = snap.buffer.into_iter().map(|(t, s, k, w, v)| ((t, s), (k, w, v))).collect();
        op.next_seq = snap.next_seq;
        op.input_wm = snap.input_wm;
        op.processing_time = snap.processing_time;
        decode_sides(&mut op.sides, &snap.sides)?;
        op.waiting_min = snap.waiting.iter().map(|v| v.timestamp).min().unwrap_or(Timestamp::MAX);
        op.waiting = snap.waiting;
        Ok(op)
    }
}
