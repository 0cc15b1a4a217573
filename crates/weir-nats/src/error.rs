//! What can go wrong when a JetStream source or sink is set up.

/// An error of the NATS connector, when a pipeline is built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NatsError {
    /// The server could not be reached.
    #[error("nats: cannot connect to {url}: {message}")]
    Connect {
        /// The server's address.
        url: String,
        /// Why.
        message: String,
    },
    /// The stream does not exist.
    #[error("nats: there is no JetStream stream '{stream}' at {url}: {message}")]
    NoStream {
        /// The server's address.
        url: String,
        /// The stream.
        stream: String,
        /// The server's answer.
        message: String,
    },
    /// The consumer exists with a configuration Weir cannot read with, or
    /// the options contradict each other.
    #[error("nats: {0}")]
    Config(String),
    /// The server refused a request.
    #[error("nats: {0}")]
    Server(String),
}
