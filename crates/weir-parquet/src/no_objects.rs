//! Without the `object-store` feature: URLs are refused with a clear error.

use crate::{Group, ParquetError};

pub(crate) fn plan(url: &str) -> Result<Vec<Group>, ParquetError> {
    Err(ParquetError::Io {
        path: url.to_string(),
        message: "an object-store URL needs weir-parquet's `object-store` feature (on by default)".into(),
    })
}
