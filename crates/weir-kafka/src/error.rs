//! The error type of the Kafka crate.

/// What can go wrong when a pipeline is set up to read or write Kafka.
/// (Errors while the pipeline runs end the job as a `PipelineError` that
/// names the topic and partition.)
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The client could not be created (a bad option, most often).
    #[error("kafka: cannot create a client for {brokers}: {message}")]
    Client {
        /// The bootstrap servers.
        brokers: String,
        /// librdkafka's message.
        message: String,
    },
    /// The brokers did not answer, or the topic's metadata is unusable.
    #[error("kafka: cannot read the metadata of topic '{topic}' from {brokers}: {message}")]
    Metadata {
        /// The bootstrap servers.
        brokers: String,
        /// The topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
    /// The topic does not exist (or has no partitions).
    #[error("kafka: topic '{topic}' does not exist on {brokers}{hint}")]
    NoTopic {
        /// The bootstrap servers.
        brokers: String,
        /// The topic.
        topic: String,
        /// What to do.
        hint: String,
    },
    /// Where to start could not be resolved for a partition.
    #[error("kafka: topic '{topic}' partition {partition}: cannot find where to start: {message}")]
    Offsets {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What went wrong.
        message: String,
    },
    /// A bad argument.
    #[error("kafka: {0}")]
    Config(String),
    /// An admin operation (creating a topic) failed.
    #[error("kafka: {0}")]
    Admin(String),
    /// Producing records failed.
    #[error("kafka: producing to '{topic}': {message}")]
    Produce {
        /// The topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
}
