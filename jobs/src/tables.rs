//! Registering sentiflow's tables (and any other path) with a session.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};

use crate::context::JobContext;
use crate::io::read::{ReadOptions, parse_file};
use crate::io::store::{Location, list_files};
use crate::schema::Table;
use crate::{Error, Result};

/// Registers a Parquet table written by sentiflow (Hive partitions as string
/// columns) under `name`. The schema comes from the schema module, so an
/// empty or missing directory is an empty table, not an error.
pub fn register_parquet_table(jc: &JobContext, name: &str, table: Table, loc: &Location) -> Result<()> {
    let keys = table.partition_keys().iter().map(|k| k.to_string()).collect();
    register_parquet_files(jc, name, table.schema(), keys, loc)
}

/// Registers the Parquet files below `loc` (Hive partitions `keys` as string
/// columns, after `schema`'s) as a listing table: a table every executor of
/// a cluster can read, where a table in memory is not.
pub fn register_parquet_files(
    jc: &JobContext,
    name: &str,
    schema: SchemaRef,
    keys: Vec<String>,
    loc: &Location,
) -> Result<()> {
    let url =
        ListingTableUrl::parse(loc.dir_url()).map_err(|source| Error::Sql { name: format!("table {name}"), source })?;
    let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(keys.into_iter().map(|k| (k, DataType::Utf8)).collect());
    let config = ListingTableConfig::new(url).with_listing_options(opts).with_schema(schema);
    let provider =
        ListingTable::try_new(config).map_err(|source| Error::Sql { name: format!("table {name}"), source })?;
    let _ = jc.ctx.deregister_table(name);
    jc.ctx
        .register_table(name, Arc::new(provider))
        .map_err(|source| Error::Sql { name: format!("table {name}"), source })?;
    Ok(())
}

/// What [`register_raw_table`] found.
#[derive(Debug, Default)]
pub struct RawTable {
    pub files: usize,
    /// Records (and files) that failed validation; in the `<name>_rejected` table.
    pub rejected: usize,
    pub first_reject: Option<crate::io::read::Reject>,
    /// NDJSON/CSV on a cluster: not registered (validation runs in this
    /// process, and a cluster cannot read a table held in memory).
    pub not_on_cluster: bool,
}

/// Registers raw tweets: a Parquet layout as a listing table; NDJSON/CSV
/// (Firehose layout, gzip or not) through the validating reader into memory,
/// so ad-hoc SQL sees exactly the records the score job accepts. What fails
/// validation is not dropped in silence: it becomes table `<name>_rejected`
/// (the `_rejected` schema) and is counted in the answer.
pub async fn register_raw_table(jc: &JobContext, name: &str, loc: &Location) -> Result<RawTable> {
    let store = jc.stores.store(&loc.store_url)?;
    let files = list_files(store.as_ref(), loc).await?;
    let mut out = RawTable { files: files.len(), ..Default::default() };
    if !files.is_empty() && files.iter().all(|f| f.location.as_ref().ends_with(".parquet")) {
        register_parquet_table(jc, name, Table::Raw, loc)?;
        return Ok(out);
    }
    if jc.is_distributed() {
        out.not_on_cluster = true;
        return Ok(out);
    }
    let mut batches = Vec::new();
    let mut rejects = Vec::new();
    for f in &files {
        let bytes = crate::io::store::fetch(store.as_ref(), loc, &f.location).await?;
        let parsed = parse_file(&loc.url_of(&f.location), bytes, ReadOptions::default());
        batches.extend(parsed.batches);
        rejects.extend(parsed.rejects);
    }
    register_batches(jc, name, Table::Raw.schema(), vec![batches])?;
    let rejected_name = format!("{name}_rejected");
    if rejects.is_empty() {
        let _ = jc.ctx.deregister_table(rejected_name.as_str());
    } else {
        let batch = crate::io::read::rejects_batch(&rejects, chrono::Utc::now().timestamp_micros())?;
        register_batches(jc, &rejected_name, Table::Rejected.schema(), vec![vec![batch]])?;
    }
    out.rejected = rejects.len();
    out.first_reject = rejects.into_iter().next();
    Ok(out)
}

/// Registers batches held in memory as table `name` (replacing any table of
/// that name), one partition per inner vector.
pub fn register_batches(
    jc: &JobContext,
    name: &str,
    schema: SchemaRef,
    partitions: Vec<Vec<RecordBatch>>,
) -> Result<()> {
    let mem = MemTable::try_new(schema, partitions).map_err(Error::query)?;
    let _ = jc.ctx.deregister_table(name);
    jc.ctx.register_table(name, Arc::new(mem)).map_err(Error::query)?;
    Ok(())
}
