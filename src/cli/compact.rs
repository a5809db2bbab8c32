//! `sentiflow compact`: merge a table's small files.

use super::expand_location;
use anyhow::Result;
use sentiflow_jobs::JobContext;

#[derive(clap::Args, Debug)]
pub(crate) struct CompactCli {
    /// A table directory, local or s3:// (e.g. OUT/scored, OUT/windows).
    #[arg(long, value_parser = expand_location)]
    table: String,
    /// Output files of about this many MiB of input Parquet.
    #[arg(long, default_value_t = 128)]
    target_mb: u64,
    /// Partitions with fewer files are left alone.
    #[arg(long, default_value_t = 2)]
    min_files: usize,
    /// The summary's figures as a CloudWatch EMF line on stdout too.
    #[arg(long, value_enum)]
    metrics: Option<super::MetricsFormat>,
}

pub(crate) async fn run(jc: &JobContext, c: CompactCli) -> Result<()> {
    let started = std::time::Instant::now();
    let r = sentiflow_jobs::job::compact::run(
        &jc.stores,
        sentiflow_jobs::job::compact::CompactArgs {
            table: c.table.clone(),
            target_bytes: c.target_mb.max(1) << 20,
            min_files: c.min_files,
        },
    )
    .await?;
    println!(
        "compacted {}: {} partitions, {} files ({} bytes, {} rows) into {} files{}",
        c.table,
        r.partitions,
        r.files_in,
        r.bytes_in,
        r.rows,
        r.files_out,
        if r.recovered > 0 { format!("; finished {} interrupted compactions", r.recovered) } else { String::new() }
    );
    super::print_emf(
        c.metrics,
        "compact",
        &[
            ("Partitions", r.partitions as f64, "Count"),
            ("FilesIn", r.files_in as f64, "Count"),
            ("FilesOut", r.files_out as f64, "Count"),
            ("BytesIn", r.bytes_in as f64, "Bytes"),
            ("Rows", r.rows as f64, "Count"),
            ("CompactSeconds", started.elapsed().as_secs_f64(), "Seconds"),
        ],
    );
    Ok(())
}
