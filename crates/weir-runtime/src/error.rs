//! The one error type of the runtime, shared by the pipeline API and the
//! runners.

/// Errors of building or running a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// A transform was configured wrongly; caught before the run starts.
    #[error("transform '{transform}': {message}")]
    Construction {
        /// The transform's name.
        transform: String,
        /// What is wrong.
        message: String,
    },
    /// A transform failed while running (a user function broke a rule of the
    /// model, an I/O operation failed, …).
    #[error("transform '{transform}' failed: {message}")]
    Execution {
        /// The transform's name.
        transform: String,
        /// What went wrong.
        message: String,
    },
    /// A runner could not start or run the pipeline.
    #[error("runner error: {0}")]
    Runner(String),
    /// A cluster could not start, or a process of it failed or was lost:
    /// every process of the cluster stops with this error.
    #[error("cluster: {0}")]
    Cluster(String),
    /// Checkpoints could not be read or written, or the checkpoint
    /// location cannot be used for this run (another job's, none usable).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The job was cancelled through its [`JobControl`](crate::JobControl).
    #[error("the job was cancelled")]
    Cancelled,
    /// A broken invariant inside Weir (a corrupted or mistyped batch, …):
    /// a bug to report, never the user's fault.
    #[error("internal error (a bug in Weir): {0}")]
    Internal(String),
    /// An error of the model (windows, triggers, strategies).
    #[error(transparent)]
    Model(#[from] weir_model::ModelError),
}

impl PipelineError {
    /// A panic in a transform's code, as the error that ends the job: the
    /// transform's name and the panic's message.
    ///
    /// ```
    /// use weir_runtime::PipelineError;
    /// let panic = std::panic::catch_unwind(|| panic!("bad input 7")).unwrap_err();
    /// let e = PipelineError::from_panic("Parse", panic);
    /// assert_eq!(e.to_string(), "transform 'Parse' failed: panicked: bad input 7");
    /// ```
    pub fn from_panic(transform: &str, panic: Box<dyn std::any::Any + Send>) -> PipelineError {
        PipelineError::Execution { transform: transform.to_string(), message: panic_message(&*panic) }
    }
}

/// `panicked: <message>` for a caught panic's payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    format!("panicked: {message}")
}
