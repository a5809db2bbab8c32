//! Parquet input, validated row by row with the same rules as NDJSON.
//!
//! Each column of the raw schema is read as whatever Arrow type the file
//! has, every row's fields become [`Cell`]s and go through
//! [`RawBuilder::push`]: a NULL, an uncastable value or a list in one row
//! rejects that row only, with its row number (1-based) as the line.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::basic::Type as PhysicalType;

use super::record::{Cell, RawBuilder};
use super::{BATCH_ROWS, ParsedFile, Reject};
use crate::schema;

/// One input column, converted once per batch to a type rows are read from.
enum Column {
    Missing,
    Utf8(ArrayRef),
    LargeUtf8(ArrayRef),
    Utf8View(ArrayRef),
    Binary(ArrayRef),
    LargeBinary(ArrayRef),
    BinaryView(ArrayRef),
    /// Integers as Int64; `src` tells a NULL from a value that did not fit.
    Int {
        ints: ArrayRef,
        src: ArrayRef,
    },
    Float(ArrayRef),
    Bool(ArrayRef),
    /// Timestamps and dates as UTC microseconds; `src` tells NULL from overflow.
    Time {
        micros: ArrayRef,
        src: ArrayRef,
    },
    Other {
        src: ArrayRef,
        kind: &'static str,
    },
}

fn kind_of(t: &DataType) -> &'static str {
    match t {
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) | DataType::ListView(_) => "a list",
        DataType::Struct(_) => "a struct",
        DataType::Map(..) => "a map",
        DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            "a decimal"
        }
        DataType::Time32(_) | DataType::Time64(_) => "a time of day",
        DataType::Duration(_) | DataType::Interval(_) => "a duration",
        _ => "a value of an unsupported type",
    }
}

impl Column {
    fn new(src: &ArrayRef) -> Column {
        let src = match src.data_type() {
            DataType::Dictionary(_, v) => match cast(src, v) {
                Ok(a) => a,
                Err(_) => return Column::Other { src: src.clone(), kind: "a dictionary of an unsupported type" },
            },
            _ => src.clone(),
        };
        let to = |t: &DataType| cast(&src, t).ok();
        match src.data_type() {
            DataType::Null => Column::Missing,
            DataType::Utf8 => Column::Utf8(src),
            DataType::LargeUtf8 => Column::LargeUtf8(src),
            DataType::Utf8View => Column::Utf8View(src),
            DataType::Binary => Column::Binary(src),
            DataType::LargeBinary => Column::LargeBinary(src),
            DataType::BinaryView => Column::BinaryView(src),
            t if t.is_integer() => match to(&DataType::Int64) {
                Some(ints) => Column::Int { ints, src },
                None => Column::Other { src, kind: "an integer" },
            },
            t if t.is_floating() => match to(&DataType::Float64) {
                Some(f) => Column::Float(f),
                None => Column::Other { src, kind: "a number" },
            },
            DataType::Boolean => Column::Bool(src),
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
                match to(&DataType::Timestamp(TimeUnit::Microsecond, None)) {
                    Some(micros) => Column::Time { micros, src },
                    None => Column::Other { src, kind: "a timestamp" },
                }
            }
            t => {
                let kind = kind_of(t);
                Column::Other { src, kind }
            }
        }
    }

    fn cell(&self, i: usize) -> Cell<'_> {
        fn utf8(b: &[u8]) -> Cell<'_> {
            match std::str::from_utf8(b) {
                Ok(s) => Cell::Str(Cow::Borrowed(s)),
                Err(_) => Cell::Other("binary data that is not UTF-8"),
            }
        }
        match self {
            Column::Missing => Cell::Null,
            Column::Utf8(a)
            | Column::LargeUtf8(a)
            | Column::Utf8View(a)
            | Column::Binary(a)
            | Column::LargeBinary(a)
            | Column::BinaryView(a)
                if a.is_null(i) =>
            {
                Cell::Null
            }
            Column::Utf8(a) => Cell::Str(Cow::Borrowed(a.as_string::<i32>().value(i))),
            Column::LargeUtf8(a) => Cell::Str(Cow::Borrowed(a.as_string::<i64>().value(i))),
            Column::Utf8View(a) => Cell::Str(Cow::Borrowed(a.as_string_view().value(i))),
            Column::Binary(a) => utf8(a.as_binary::<i32>().value(i)),
            Column::LargeBinary(a) => utf8(a.as_binary::<i64>().value(i)),
            Column::BinaryView(a) => utf8(a.as_binary_view().value(i)),
            Column::Int { src, .. } | Column::Time { src, .. } | Column::Other { src, .. } if src.is_null(i) => {
                Cell::Null
            }
            Column::Int { ints, .. } if ints.is_null(i) => Cell::Other("an integer too large"),
            Column::Int { ints, .. } => Cell::Int(ints.as_primitive::<Int64Type>().value(i)),
            Column::Float(a) if a.is_null(i) => Cell::Null,
            Column::Float(a) => Cell::Float(a.as_primitive::<Float64Type>().value(i)),
            Column::Bool(a) if a.is_null(i) => Cell::Null,
            Column::Bool(a) => Cell::Bool(a.as_boolean().value(i)),
            Column::Time { micros, .. } if micros.is_null(i) => Cell::TimeOverflow,
            Column::Time { micros, .. } => Cell::Time(micros.as_primitive::<TimestampMicrosecondType>().value(i)),
            Column::Other { kind, .. } => Cell::Other(kind),
        }
    }
}

/// Reads a Parquet file; a panic inside the Parquet/Arrow readers (a crafted
/// file can reach `unimplemented!` in arrow-ipc's schema decoding, found by
/// fuzzing) becomes a file-level reject instead of ending the job. After each
/// of the file's batches `emit` may take the rows so far as a chunk; it
/// returns false to stop reading.
pub(super) fn parse_parquet(file: &str, bytes: Bytes, b: &mut RawBuilder, out: &mut ParsedFile, emit: Emit<'_>) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_parquet(file, bytes, b, out, emit)));
    if let Err(panic) = r {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown".into());
        out.rejects.push(Reject::file_level(
            file,
            format!(
                "not a readable Parquet file: the reader failed ({msg}); rows read before it: {}; re-deliver the file",
                b.total
            ),
        ));
    }
}

/// The file's Arrow schema with its top-level INT96 columns as microsecond
/// timestamps, if it has any.
fn int96_as_micros(r: &ArrowReaderMetadata) -> Option<SchemaRef> {
    let int96: Vec<String> = r
        .parquet_schema()
        .columns()
        .iter()
        .filter(|c| c.physical_type() == PhysicalType::INT96 && c.path().parts().len() == 1)
        .map(|c| c.name().to_string())
        .collect();
    if int96.is_empty() {
        return None;
    }
    let fields: Vec<Field> = r
        .schema()
        .fields()
        .iter()
        .map(|f| match int96.contains(f.name()) {
            true => f.as_ref().clone().with_data_type(DataType::Timestamp(TimeUnit::Microsecond, None)),
            false => f.as_ref().clone(),
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(fields, r.schema().metadata().clone())))
}

/// Called after each batch of a file with the rows so far; false stops the read.
pub(super) type Emit<'a> = &'a mut dyn FnMut(&mut RawBuilder, &mut ParsedFile) -> bool;

fn read_parquet(file: &str, bytes: Bytes, b: &mut RawBuilder, out: &mut ParsedFile, emit: Emit<'_>) {
    let file_reject = |reason: String| Reject::file_level(file, reason);
    // the embedded Arrow schema is only a type hint, and decoding it is where malformed files panic
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let reader = match ArrowReaderMetadata::load(&bytes, options.clone())
        .and_then(|m| match int96_as_micros(&m) {
            // INT96 (Spark's and Impala's default timestamps) read as nanoseconds wraps outside
            // 1677..2262 (1600-01-01 became 2184-07-20): read as microseconds, the range check sees it
            Some(schema) => ArrowReaderMetadata::try_new(m.metadata().clone(), options.with_schema(schema)),
            None => Ok(m),
        })
        .and_then(|m| ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, m).with_batch_size(BATCH_ROWS).build())
    {
        Ok(r) => r,
        Err(e) => {
            out.rejects.push(file_reject(format!("not a readable Parquet file: {e}")));
            return;
        }
    };
    let schema = datafusion::arrow::record_batch::RecordBatchReader::schema(&reader);
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let doubled = super::doubled_raw_columns(names.iter().copied());
    if !doubled.is_empty() {
        out.rejects.push(file_reject(format!(
            "Parquet file has more than one column named {}; which one to read is ambiguous: rename or drop the others",
            doubled.join(", ")
        )));
        return;
    }
    let missing: Vec<&str> =
        schema::RAW.iter().filter(|c| !c.nullable && !names.contains(&c.name)).map(|c| c.name).collect();
    if !missing.is_empty() {
        out.rejects.push(file_reject(format!(
            "Parquet file lacks required column(s) {}; it has {}",
            missing.join(", "),
            names.join(", ")
        )));
        return;
    }
    out.extra_fields.extend(names.iter().filter(|n| !schema::RAW.iter().any(|c| c.name == **n)).map(|n| n.to_string()));
    let mut row_base = 0i64;
    for batch in reader {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                // rows before this batch are kept; the rest of the file cannot be read
                let kept = if row_base == 0 {
                    "no row could be read".to_string()
                } else {
                    format!("rows 1..={row_base} were read, the rest was not")
                };
                out.rejects.push(file_reject(format!(
                    "Parquet data is corrupt after row {row_base}: {e}; {kept} (re-deliver the file)"
                )));
                return;
            }
        };
        let cols: Vec<(&str, Column)> = schema::RAW
            .iter()
            .map(|c| (c.name, batch.column_by_name(c.name).map(Column::new).unwrap_or(Column::Missing)))
            .collect();
        for i in 0..batch.num_rows() {
            let field = |k: &str| cols.iter().find(|(n, _)| *n == k).map(|(_, c)| c.cell(i)).unwrap_or(Cell::Null);
            if let Err(reason) = b.push(field) {
                out.rejects.push(Reject::new(file, Some(row_base + i as i64 + 1), reason, &[]));
            }
            b.maybe_flush(out);
        }
        row_base += batch.num_rows() as i64;
        if !emit(b, out) {
            return;
        }
    }
    out.empty = row_base == 0;
}
