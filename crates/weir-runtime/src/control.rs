//! Stopping a running job from outside: cancel (stop now) or drain (stop
//! reading, let every window fire, end normally), as Flink's `cancel` and
//! `stop --drain`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const RUNNING: u8 = 0;
const DRAINING: u8 = 1;
const CANCELLED: u8 = 2;

/// A handle to stop a job, shared by the pipeline and whoever controls it
/// (another thread, a signal handler). Get it with `Pipeline::control`
/// before the run starts; every runner obeys it.
///
/// - [`drain`](JobControl::drain): the sources stop reading and report the
///   end of their input; the watermark advances to the end of time, so
///   every window fires and every sink commits; the run returns `Ok` with
///   what was read so far. A checkpointed job's location then says it
///   completed (as for input that ended).
/// - [`cancel`](JobControl::cancel): the run stops as soon as every worker
///   notices (within one step) and returns [`PipelineError::Cancelled`];
///   nothing more is emitted. Checkpoints stay, so that a run with the
///   same checkpoint location resumes from the last one, as after a crash.
///
/// ```
/// use weir_runtime::JobControl;
/// let control = JobControl::default();
/// let remote = control.clone(); // e.g. moved into a Ctrl-C handler
/// remote.drain();
/// assert!(control.is_draining() && !control.is_cancelled());
/// control.cancel(); // a cancel overrides a drain
/// assert!(control.is_cancelled());
/// ```
///
/// [`PipelineError::Cancelled`]: crate::PipelineError::Cancelled
#[derive(Clone, Debug, Default)]
pub struct JobControl(Arc<AtomicU8>);

impl JobControl {
    /// Stop reading, fire every window, end normally.
    pub fn drain(&self) {
        let _ = self.0.compare_exchange(RUNNING, DRAINING, Ordering::AcqRel, Ordering::Acquire);
    }
    /// Stop now, with [`PipelineError::Cancelled`](crate::PipelineError::Cancelled).
    pub fn cancel(&self) {
        self.0.store(CANCELLED, Ordering::Release);
    }
    /// Whether a drain (and no cancel) was asked for.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Acquire) == DRAINING
    }
    /// Whether a cancel was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire) == CANCELLED
    }
}
