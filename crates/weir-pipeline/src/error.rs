//! The one error type of the pipeline crate.

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
    /// An error of the model (windows, triggers, strategies).
    #[error(transparent)]
    Model(#[from] weir_model::ModelError),
}
