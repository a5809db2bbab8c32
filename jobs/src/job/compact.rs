//! `sentiflow compact`: merges a table's small files (streaming mode writes
//! one per micro-batch and partition) into files of about a target size,
//! partition by partition, without changing what queries return.
//!
//! Per partition: (1) a marker `_compaction/<id>.json` names the inputs and
//! the output, (2) the merged file `compacted-<id>-<k>.parquet` is written,
//! (3) the inputs are deleted, (4) the marker is deleted. A run that finds a
//! marker left by a crash finishes it: if every output is there the inputs
//! go, otherwise the partial outputs go and the inputs stay. Between (2) and
//! (3) of a crashed run, readers see the rows twice until the next run.

use std::collections::BTreeMap;

use bytes::Bytes;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::io::store::{Location, StoreRegistry, list_below, put, stable_hash};
use crate::io::write::parquet_props;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct CompactArgs {
    /// A table directory (e.g. `s3://b/out/scored`).
    pub table: String,
    /// Output files of about this many bytes (of input Parquet).
    pub target_bytes: u64,
    /// Partitions with fewer files are left alone.
    pub min_files: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactReport {
    pub partitions: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub bytes_in: u64,
    pub rows: u64,
    pub recovered: usize,
}

fn err(loc: &Location, p: &Path, e: impl std::fmt::Display) -> Error {
    Error::Checkpoint { location: loc.url_of(p), reason: e.to_string() }
}

async fn finish_markers(store: &dyn ObjectStore, loc: &Location, report: &mut CompactReport) -> Result<()> {
    let dir = loc.path.clone().join("_compaction");
    for m in list_below(store, loc, &dir).await? {
        let bytes = store
            .get(&m.location)
            .await
            .map_err(|e| err(loc, &m.location, e))?
            .bytes()
            .await
            .map_err(|e| err(loc, &m.location, e))?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| err(loc, &m.location, e))?;
        let paths = |k: &str| -> Vec<Path> {
            v[k].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(Path::from)).collect()).unwrap_or_default()
        };
        let (inputs, outputs) = (paths("inputs"), paths("outputs"));
        // an error other than NotFound stops the recovery: guessing either way could delete the only copy
        let mut all_out = true;
        for o in &outputs {
            all_out &= crate::io::store::exists(store, loc, o).await?;
        }
        let doomed = if all_out { inputs } else { outputs };
        for p in doomed {
            crate::io::store::delete_if_exists(store, loc, &p).await?;
        }
        store.delete(&m.location).await.map_err(|source| Error::Store {
            op: "delete",
            location: loc.url_of(&m.location),
            source,
        })?;
        report.recovered += 1;
    }
    Ok(())
}

pub async fn run(stores: &StoreRegistry, args: CompactArgs) -> Result<CompactReport> {
    let loc = Location::parse(&args.table)?;
    let store = stores.store(&loc.store_url)?;
    let mut report = CompactReport::default();
    finish_markers(store.as_ref(), &loc, &mut report).await?;
    // visible Parquet files grouped by directory
    let mut parts: BTreeMap<String, Vec<object_store::ObjectMeta>> = BTreeMap::new();
    for m in crate::io::store::list_files(store.as_ref(), &loc).await? {
        if !m.location.as_ref().ends_with(".parquet") {
            continue;
        }
        let dir = m.location.as_ref().rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
        parts.entry(dir).or_default().push(m);
    }
    for (dir, mut files) in parts {
        if files.len() < args.min_files.max(2) {
            continue;
        }
        files.sort_by(|a, b| a.location.cmp(&b.location));
        // the directory as object_store holds it (its names as written, not re-encoded)
        let parts: Vec<_> = files[0].location.parts().collect();
        let dir_path = Path::from_iter(parts[..parts.len() - 1].iter().cloned());
        // groups of about target_bytes
        let mut groups: Vec<Vec<object_store::ObjectMeta>> = vec![Vec::new()];
        let mut size = 0u64;
        for f in files {
            if size > 0 && size + f.size > args.target_bytes {
                groups.push(Vec::new());
                size = 0;
            }
            size += f.size;
            if let Some(g) = groups.last_mut() {
                g.push(f);
            }
        }
        let names: Vec<String> = groups.iter().flatten().map(|m| m.location.to_string()).collect();
        let id = format!("{:016x}", stable_hash(&names.join("\n")));
        let outputs: Vec<Path> =
            (0..groups.len()).map(|k| dir_path.clone().join(format!("compacted-{id}-{k:03}.parquet"))).collect();
        let marker = loc.path.clone().join("_compaction").join(format!("{id}.json"));
        let body =
            serde_json::json!({"inputs": names, "outputs": outputs.iter().map(|p| p.to_string()).collect::<Vec<_>>()});
        put(store.as_ref(), &loc, &marker, body.to_string().into_bytes()).await?;
        for (group, out) in groups.iter().zip(&outputs) {
            let mut writer: Option<datafusion::parquet::arrow::ArrowWriter<Vec<u8>>> = None;
            for f in group {
                let bytes: Bytes = store
                    .get(&f.location)
                    .await
                    .map_err(|source| Error::Store { op: "get", location: loc.url_of(&f.location), source })?
                    .bytes()
                    .await
                    .map_err(|source| Error::Store { op: "get", location: loc.url_of(&f.location), source })?;
                report.bytes_in += bytes.len() as u64;
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|b| b.build())
                    .map_err(|source| Error::ParquetWrite { location: loc.url_of(&f.location), source })?;
                for batch in reader {
                    let batch = batch.map_err(|e| Error::arrow(loc.url_of(&f.location), e))?;
                    if writer.is_none() {
                        writer = Some(
                            datafusion::parquet::arrow::ArrowWriter::try_new(
                                Vec::new(),
                                batch.schema(),
                                Some(parquet_props()),
                            )
                            .map_err(|source| Error::ParquetWrite { location: loc.url_of(out), source })?,
                        );
                    }
                    report.rows += batch.num_rows() as u64;
                    if let Some(w) = writer.as_mut() {
                        w.write(&batch).map_err(|source| Error::ParquetWrite { location: loc.url_of(out), source })?;
                    }
                }
            }
            if let Some(w) = writer {
                let buf = w.into_inner().map_err(|source| Error::ParquetWrite { location: loc.url_of(out), source })?;
                put(store.as_ref(), &loc, out, buf).await?;
                report.files_out += 1;
            }
        }
        for f in groups.iter().flatten() {
            store.delete(&f.location).await.map_err(|source| Error::Store {
                op: "delete",
                location: loc.url_of(&f.location),
                source,
            })?;
            report.files_in += 1;
        }
        store.delete(&marker).await.map_err(|source| Error::Store {
            op: "delete",
            location: loc.url_of(&marker),
            source,
        })?;
        report.partitions += 1;
        tracing::info!(partition = %dir, files = groups.iter().map(Vec::len).sum::<usize>(), outputs = groups.len(), "compacted");
    }
    Ok(report)
}
