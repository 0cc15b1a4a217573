//! The crate's error type.

/// What can go wrong reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The storage failed (after retries, where the caller retries).
    #[error("checkpoint storage {location}: {message}")]
    Storage {
        /// Where (a path or URL).
        location: String,
        /// What happened.
        message: String,
    },
    /// A file that is not what it should be: truncated, a wrong checksum,
    /// not a Weir checkpoint file.
    #[error("corrupt checkpoint file {file}: {reason}")]
    Corrupt {
        /// The file's name in the store.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file written by a format this Weir does not read.
    #[error("checkpoint file {file} has format version {found}; this Weir reads version {supported} (written by another Weir version)")]
    Version {
        /// The file's name in the store.
        file: String,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The location holds checkpoints of another job.
    #[error("checkpoint location {location} belongs to another job: it holds checkpoints of \"{found}\", this run is \"{expected}\" (use another location, or remove it to start over)")]
    OtherJob {
        /// The location.
        location: String,
        /// The job the checkpoints were taken from.
        found: String,
        /// This run's job.
        expected: String,
    },
    /// Checkpoints exist but none is complete and intact.
    #[error("checkpoint location {location} holds checkpoints, but none is usable ({reasons}); refusing to start from zero (remove the location, or allow starting over)")]
    NoneUsable {
        /// The location.
        location: String,
        /// Why each candidate was refused.
        reasons: String,
    },
    /// The checkpoint cannot be restored by this run.
    #[error("cannot restore checkpoint {epoch} from {location}: {reason}")]
    Incompatible {
        /// The location.
        location: String,
        /// The checkpoint's epoch.
        epoch: u64,
        /// Why.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;
