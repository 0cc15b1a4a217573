//! Fares per vendor and hour, from a folder of Parquet files to another.
//!
//! ```sh
//! cargo run --release -p weir-parquet --example fares_per_vendor -- /tmp/trips /tmp/fares
//! ```
//!
//! The example writes 100,000 taxi trips as Parquet files into the first
//! folder (unless it holds some), sums the fares per vendor and hour of
//! pickup in event-time windows, writes the sums as Parquet files into the
//! second folder (a file per worker, visible when the run completes) and
//! reads them back.

use std::error::Error;
use std::sync::Arc;

use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde::{Deserialize, Serialize};
use weir_model::{Duration, FixedWindows, WindowingStrategy};
use weir_parquet::{read_parquet, ParquetSinkExt, ParquetSource};
use weir_pipeline::prelude::*;
use weir_runner_timely::TimelyRunner;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Trip {
    vendor: String,
    fare: f64,
    pickup_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Fares {
    vendor: String,
    hour: i64,
    total: f64,
}

/// Two files of 50,000 trips, in row groups of 10,000.
fn write_trips(dir: &std::path::Path) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    let schema = Arc::new(parse_message_type(
        "message trip { required binary vendor (UTF8); required double fare; required int64 pickup_ms; }",
    )?);
    for file in 0..2i64 {
        let out = std::fs::File::create(dir.join(format!("trips-{file}.parquet")))?;
        let mut w = SerializedFileWriter::new(out, schema.clone(), Arc::new(WriterProperties::builder().build()))?;
        for group in 0..5i64 {
            let ids: Vec<i64> = (0..10_000).map(|i| file * 50_000 + group * 10_000 + i).collect();
            let vendors: Vec<ByteArray> = ids.iter().map(|i| ByteArray::from(format!("v{}", i % 3).as_str())).collect();
            let fares: Vec<f64> = ids.iter().map(|i| 5.0 + (i % 40) as f64 * 0.5).collect();
            let pickups: Vec<i64> = ids.iter().map(|i| i * 360).collect();
            let mut rg = w.next_row_group()?;
            let mut c = rg.next_column()?.expect("vendor");
            c.typed::<ByteArrayType>().write_batch(&vendors, None, None)?;
            c.close()?;
            let mut c = rg.next_column()?.expect("fare");
            c.typed::<DoubleType>().write_batch(&fares, None, None)?;
            c.close()?;
            let mut c = rg.next_column()?.expect("pickup_ms");
            c.typed::<Int64Type>().write_batch(&pickups, None, None)?;
            c.close()?;
            rg.close()?;
        }
        w.close()?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let trips_dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/weir-trips".into()));
    let fares_dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/weir-fares".into()));
    if std::fs::read_dir(&trips_dir).map_or(true, |mut d| d.next().is_none()) {
        write_trips(&trips_dir)?;
    }
    let _ = std::fs::remove_dir_all(&fares_dir);

    let p = Pipeline::new();
    let (trips, dead_letters) = read_parquet(&p, ParquetSource::<Trip>::json(&trips_dir).event_time(|t| t.pickup_ms))?;
    trips
        .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(3_600_000))?))
        .map(|t: Trip| ((t.vendor, t.pickup_ms.div_euclid(3_600_000)), t.fare))
        .combine_per_key(Sum::new())
        .map(|((vendor, hour), total)| Fares { vendor, hour, total })
        .write_parquet(
            &fares_dir,
            "message fares { required binary vendor (UTF8); required int64 hour; required double total; }",
        )?;
    let dead_letters = dead_letters.collect();
    p.run_with(&TimelyRunner::default())?;

    // Read the sums back.
    let p = Pipeline::new();
    let (fares, _) = read_parquet(&p, ParquetSource::<Fares>::json(&fares_dir))?;
    let fares = fares.collect();
    p.run_with(&TimelyRunner::default())?;
    let mut fares = fares.values();
    fares.sort_by(|a, b| (a.hour, &a.vendor).cmp(&(b.hour, &b.vendor)));
    for f in fares.iter().take(6) {
        println!("hour {:>2} {}: {:.1}", f.hour, f.vendor, f.total);
    }
    let total: f64 = fares.iter().map(|f| f.total).sum();
    println!(
        "{} sums in {}; {total:.1} in fares; {} dead letters",
        fares.len(),
        fares_dir.display(),
        dead_letters.values().len()
    );
    Ok(())
}
