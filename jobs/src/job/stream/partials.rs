//! Window partials (rows of `sql/window_source_aggs.sql`): as JSON in the
//! shard states, as Arrow for the SQL, merged by `sql/stream_merge.sql`, and
//! tagged by shard so that several shards go through one query.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimestampMicrosecondType,
};
use serde_json::{Value, json};

use super::collect;
use crate::context::JobContext;
use crate::tables::register_batches;
use crate::{Error, Result};

/// Columns of window_source_aggs / the window state.
pub(super) fn partial_schema() -> SchemaRef {
    let ts = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("window_start", ts, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new("n_unscored", DataType::Int64, true),
        Field::new("sum_score", DataType::Float64, true),
        Field::new("min_score", DataType::Float64, true),
        Field::new("max_score", DataType::Float64, true),
        Field::new("n_negative", DataType::Int64, true),
        Field::new("n_positive", DataType::Int64, true),
        Field::new("n_fallback", DataType::Int64, true),
    ]))
}

/// Batches in window_source_aggs' columns, typed as the state (all nullable).
pub(super) fn as_partials(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|b| b.with_schema(partial_schema()).map_err(|e| Error::arrow("window partials", e)))
        .collect()
}

pub(super) fn state_batch(rows: &[Value]) -> Result<RecordBatch> {
    let i = |k: usize| -> ArrayRef { Arc::new(rows.iter().map(|r| r[k].as_i64()).collect::<Int64Array>()) };
    let f = |k: usize| -> ArrayRef { Arc::new(rows.iter().map(|r| r[k].as_f64()).collect::<Float64Array>()) };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r[0].as_i64()).collect::<TimestampMicrosecondArray>().with_timezone("UTC")),
        Arc::new(rows.iter().map(|r| r[1].as_str().map(str::to_string)).collect::<StringArray>()),
        i(2),
        i(3),
        f(4),
        f(5),
        f(6),
        i(7),
        i(8),
        // state saved before n_fallback existed has 9 values: NULL (none)
        i(9),
    ];
    RecordBatch::try_new(partial_schema(), cols).map_err(|e| Error::arrow("window state", e))
}

pub(super) fn state_rows(b: &RecordBatch) -> Vec<Value> {
    let ws = b.column(0).as_primitive::<TimestampMicrosecondType>();
    let src = datafusion::arrow::compute::cast(b.column(1), &DataType::Utf8).unwrap_or_else(|_| b.column(1).clone());
    let Some(src) = src.as_any().downcast_ref::<StringArray>() else { return Vec::new() };
    let ints = |k: usize| b.column(k).as_primitive::<Int64Type>();
    let flts = |k: usize| b.column(k).as_primitive::<Float64Type>();
    (0..b.num_rows())
        .map(|r| {
            let oi = |k: usize| (!ints(k).is_null(r)).then(|| ints(k).value(r));
            let of = |k: usize| (!flts(k).is_null(r)).then(|| flts(k).value(r));
            json!([ws.value(r), src.value(r), oi(2), oi(3), of(4), of(5), of(6), oi(7), oi(8), oi(9)])
        })
        .collect()
}

/// Separates a shard's index from the source in a tagged `source` value.
pub(super) const TAG: char = '\u{1}';

/// The batch with `source` values prefixed by `index` and [`TAG`]: several
/// shards' rows go through one query and are told apart afterwards.
pub(super) fn tag_source(b: &RecordBatch, index: usize) -> Result<RecordBatch> {
    let Some((col, _)) = b.schema().column_with_name("source") else { return Ok(b.clone()) };
    let src = b.column(col).as_string::<i32>();
    let tagged: StringArray = src.iter().map(|v| v.map(|v| format!("{index}{TAG}{v}"))).collect();
    let mut cols = b.columns().to_vec();
    cols[col] = Arc::new(tagged);
    RecordBatch::try_new(b.schema(), cols).map_err(|e| Error::arrow("tagging sources", e))
}

/// Every list's batches in one list, each batch tagged with its list's index.
pub(super) fn tag_all(lists: &[Vec<RecordBatch>]) -> Result<Vec<RecordBatch>> {
    lists.iter().enumerate().flat_map(|(i, bs)| bs.iter().map(move |b| tag_source(b, i))).collect()
}

/// Splits tagged batches back into `n` lists by index, with the tag removed.
pub(super) fn untag_batches(batches: &[RecordBatch], n: usize) -> Result<Vec<Vec<RecordBatch>>> {
    let mut out = vec![Vec::new(); n];
    for b in batches {
        let Some((col, _)) = b.schema().column_with_name("source") else { continue };
        let src = b.column(col).as_string::<i32>();
        let split: Vec<Option<(usize, &str)>> = src
            .iter()
            .map(|v| v.and_then(|v| v.split_once(TAG)).and_then(|(i, s)| Some((i.parse().ok()?, s))))
            .collect();
        for (i, list) in out.iter_mut().enumerate() {
            let mask: BooleanArray = split.iter().map(|t| Some(t.is_some_and(|(k, _)| k == i))).collect();
            if mask.true_count() == 0 {
                continue;
            }
            let mut part = filter_record_batch(b, &mask).map_err(|e| Error::arrow("untagging", e))?;
            let plain: StringArray = part
                .column(col)
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(|v| v.split_once(TAG).map_or(v, |(_, s)| s).to_string()))
                .collect();
            let mut cols = part.columns().to_vec();
            cols[col] = Arc::new(plain);
            part = RecordBatch::try_new(part.schema(), cols).map_err(|e| Error::arrow("untagging", e))?;
            list.push(part);
        }
    }
    Ok(out)
}

/// A partials row with its source tagged by `index`.
pub(super) fn tag_row(row: &Value, index: usize) -> Value {
    let mut r = row.clone();
    if let Some(s) = r[1].as_str() {
        r[1] = json!(format!("{index}{TAG}{s}"));
    }
    r
}

/// A tagged partials row's index and the row with its source as it was.
pub(super) fn untag_row(mut row: Value) -> Option<(usize, Value)> {
    let (i, s) = row[1].as_str()?.split_once(TAG)?;
    let (i, s) = (i.parse().ok()?, s.to_string());
    row[1] = json!(s);
    Some((i, row))
}

/// Partials combined per (window, source): `sql/stream_merge.sql` over `batch` and `state`.
pub(super) async fn merge_rows(
    jc: &JobContext,
    batch: Vec<RecordBatch>,
    state: RecordBatch,
) -> Result<Vec<RecordBatch>> {
    register_batches(jc, "batch_aggs", partial_schema(), vec![batch])?;
    register_batches(jc, "state_aggs", partial_schema(), vec![vec![state]])?;
    Ok(collect(jc, "stream_merge", vec![]).await?.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_sources_split_back_by_shard() {
        let b = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("source", DataType::Utf8, false),
                Field::new("n", DataType::Int64, false),
            ])),
            vec![Arc::new(StringArray::from(vec!["x", "y\u{1}z"])), Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let tagged = vec![tag_source(&b, 0).unwrap(), tag_source(&b, 2).unwrap()];
        let back = untag_batches(&tagged, 3).unwrap();
        assert_eq!(back[0], vec![b.clone()]);
        assert!(back[1].is_empty());
        assert_eq!(back[2], vec![b]);
        let row = json!([0, "a\u{1}b", 1]);
        assert_eq!(untag_row(tag_row(&row, 7)), Some((7, row)));
    }
}
