//! The properties the fuzz targets in `fuzz/` check, in one place so that
//! `cargo test` replays their seed corpus (`fuzz/corpus/<target>/`) too.
//!
//! Each function takes arbitrary bytes and panics when a property fails:
//! the parsers must never panic, every good row must satisfy the raw
//! schema, and every record must be accounted for.

use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::TimestampMicrosecondType;

use crate::io::read::{Format, ReadOptions, parse_file, parse_timestamp};
use crate::schema::{self, event_time_in_range};

/// For the fuzz targets: libFuzzer's panic hook aborts on every panic, even
/// one the parsers catch and turn into a reject (the Parquet reader's, see
/// `read/parquet.rs`). This hook stays silent instead, so only a panic that
/// escapes the property function aborts (libfuzzer-sys catches it and
/// aborts); replay the reported input with `cargo test fuzz_corpus` (after
/// copying it to `fuzz/corpus/<target>/`) to see its message.
pub fn let_caught_panics_pass() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// Text limit used by the fuzz targets (small, so the limit is reached).
const MAX_TEXT: usize = 256;

/// `parse_record_file`: the first byte picks the format, the rest is the file.
pub fn records(data: &[u8]) {
    let Some((first, body)) = data.split_first() else { return };
    let (name, format) = match first % 4 {
        0 => ("f.json", Format::Ndjson),
        1 => ("f.csv", Format::Csv),
        2 => ("f.tsv", Format::Csv),
        _ => ("f.parquet", Format::Parquet),
    };
    let p =
        parse_file(name, Bytes::copy_from_slice(body), ReadOptions { format: Some(format), max_text_bytes: MAX_TEXT });
    let batch_rows: usize = p.batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(batch_rows, p.rows, "rows counted = rows in batches");
    assert!(!(p.empty && (p.rows > 0 || !p.rejects.is_empty())), "an empty file has no rows and no rejects");
    for r in &p.rejects {
        assert!(!r.reason.is_empty(), "every reject has a reason");
        assert!(r.line.is_none_or(|l| l >= 1), "lines are 1-based");
        // lossy UTF-8 turns each bad byte of the excerpt into U+FFFD (3 bytes)
        assert!(r.record.as_ref().is_none_or(|t| t.len() <= 3 * crate::io::read::REJECT_EXCERPT_BYTES));
    }
    for b in &p.batches {
        assert_eq!(b.schema(), crate::schema::Table::Raw.schema());
        for c in schema::RAW.iter().filter(|c| !c.nullable) {
            assert_eq!(b.column_by_name(c.name).map(|a| a.null_count()), Some(0), "{} is required", c.name);
        }
        let at = b.column_by_name("created_at").expect("created_at").as_primitive::<TimestampMicrosecondType>();
        assert!(at.values().iter().all(|t| event_time_in_range(*t)), "event times in range");
        let text = b.column_by_name("text").expect("text").as_string::<i32>();
        assert!(text.iter().flatten().all(|t| t.len() <= MAX_TEXT), "text within the limit");
    }
    if format == Format::Ndjson && !p.rejects.iter().any(|r| r.line.is_none()) {
        // every non-blank line yields at least one row or reject
        let text = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let lines = text.split(|c| *c == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
        if !body.starts_with(&[0x1f, 0x8b]) {
            assert!(p.rows + p.rejects.len() >= lines, "{} rows + {} rejects < {lines} lines", p.rows, p.rejects.len());
        }
    }
}

/// `parse_timestamp`: any text; a parsed time is a valid instant.
pub fn timestamp(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(t) = parse_timestamp(s) {
        assert!(chrono::DateTime::from_timestamp_micros(t).is_some(), "{s:?} parsed to {t}, not an instant");
    }
}

/// `split_statements`: any script; no empty statement, no panic, and a
/// script without quotes, comments or `$` splits exactly on `;`.
pub fn statements(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let got = crate::sql::split_statements(s);
    assert!(got.iter().all(|x| !x.trim().is_empty() && x.trim() == x), "{got:?}");
    if !s.contains(['\'', '"', '$', '-', '/']) {
        let want: Vec<String> = s.split(';').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect();
        assert_eq!(got, want);
    }
}

#[cfg(test)]
mod tests {
    /// Replays every seed of `fuzz/corpus/<target>/` through its property.
    #[test]
    fn fuzz_corpus_replays() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut n = 0;
        for (target, check) in [
            ("parse_record_file", super::records as fn(&[u8])),
            ("parse_timestamp", super::timestamp),
            ("split_statements", super::statements),
        ] {
            let dir = root.join(target);
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for e in entries {
                let path = e.expect("entry").path();
                let data = std::fs::read(&path).expect("seed");
                let r = std::panic::catch_unwind(|| check(&data));
                assert!(r.is_ok(), "{target}: seed {} fails its property", path.display());
                n += 1;
            }
        }
        assert!(n >= 20, "only {n} seeds");
    }
}
