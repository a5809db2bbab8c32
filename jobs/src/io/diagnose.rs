//! Naming the file behind a failed query. DataFusion's Parquet errors
//! ("Corrupt footer", "Data corruption detected", a page checksum mismatch)
//! do not say which file of a table they came from, so after such a failure
//! the files of the tables the query reads are read one by one, in name order,
//! until one fails. It costs a read of those tables, and only on failure.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::listing::{ListingTable, ListingTableUrl};
use datafusion::datasource::source_as_provider;
use datafusion::datasource::view::ViewTable;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::Error;

/// What a query needs to explain its own failure: the plan and the stores.
pub struct QueryScope {
    plan: LogicalPlan,
    task: Arc<TaskContext>,
}

impl QueryScope {
    /// Taken before the DataFrame is run (running it consumes it).
    pub fn of(df: &DataFrame) -> Self {
        Self { plan: df.logical_plan().clone(), task: Arc::new(df.task_ctx()) }
    }

    /// The query's error; when it came from reading Parquet, it names the
    /// unreadable file and what to do with it.
    pub async fn error(&self, e: DataFusionError) -> Error {
        if !from_reading_parquet(&e) {
            return Error::query(e);
        }
        match self.unreadable_file().await {
            Some((file, reason)) => Error::UnreadableFile { file, reason, source: e },
            None => Error::query(e),
        }
    }

    /// The first file (in name order) of the tables the plan reads that cannot be read, and why.
    async fn unreadable_file(&self) -> Option<(String, String)> {
        for url in table_urls(&self.plan) {
            let store = self.task.runtime_env().object_store(url.object_store()).ok()?;
            let mut files: Vec<object_store::ObjectMeta> = store
                .list(Some(url.prefix()))
                .try_filter(|m| futures::future::ready(is_visible_parquet(&url, m)))
                .try_collect()
                .await
                .ok()?;
            files.sort_by(|a, b| a.location.cmp(&b.location));
            for meta in files {
                if let Err(reason) = read_all(store.clone(), meta.clone()).await {
                    return Some((format!("{}{}", url.object_store().as_str(), meta.location), reason));
                }
            }
        }
        None
    }
}

/// Runs a DataFrame to its batches; a failure names the unreadable file behind it.
pub async fn collect(df: DataFrame) -> crate::Result<Vec<datafusion::arrow::array::RecordBatch>> {
    let scope = QueryScope::of(&df);
    match df.collect().await {
        Ok(batches) => Ok(batches),
        Err(e) => Err(scope.error(e).await),
    }
}

/// Whether an error is one a bad Parquet file gives (the reader's, or the decoder's inside Arrow).
fn from_reading_parquet(e: &DataFusionError) -> bool {
    let msg = e.to_string();
    msg.contains("Parquet") || msg.to_ascii_lowercase().contains("corrupt") || msg.contains("checksum")
}

/// The locations of the listing tables a plan reads, through views and subqueries.
fn table_urls(plan: &LogicalPlan) -> Vec<ListingTableUrl> {
    let mut urls = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
        {
            urls.extend(provider_urls(provider.as_ref()));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    urls
}

fn provider_urls(provider: &dyn TableProvider) -> Vec<ListingTableUrl> {
    if let Some(t) = provider.downcast_ref::<ListingTable>() {
        return t.table_paths().clone();
    }
    if let Some(v) = provider.downcast_ref::<ViewTable>() {
        return table_urls(v.logical_plan());
    }
    Vec::new()
}

/// A file the table reads: a Parquet file below its location, not hidden (as the tables are registered).
fn is_visible_parquet(url: &ListingTableUrl, m: &object_store::ObjectMeta) -> bool {
    m.location.as_ref().ends_with(".parquet") && !crate::io::store::is_hidden(url.prefix(), &m.location)
}

/// Reads every row group of a file; the reader's error as text.
async fn read_all(store: Arc<dyn object_store::ObjectStore>, meta: object_store::ObjectMeta) -> Result<(), String> {
    let bytes = store.get(&meta.location).await.map_err(|e| e.to_string())?.bytes().await.map_err(|e| e.to_string())?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())?;
    for batch in reader {
        batch.map_err(|e| e.to_string())?;
    }
    Ok(())
}
