//! CSV/TSV records with a header row naming the raw columns.
//!
//! A quoted field may span lines, so one unbalanced quote could swallow the
//! rest of a file into a single record. A record whose quote never closes, or
//! one that spans lines and is longer than the text limit, is taken for such a
//! runaway, as is one spanning lines of which a later one is a valid record
//! by itself: only its first line is rejected and reading resumes on the next
//! line, so the records after it are still read one by one.

use std::collections::BTreeSet;

use serde_json::Value;

use super::record::RawBuilder;
use super::{ParsedFile, Reject};
use crate::schema;

fn reader(data: &[u8], delim: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new().delimiter(delim).flexible(true).has_headers(false).from_reader(data)
}

/// The field delimiter of a file: a tab for `.tsv`, else a comma.
pub(super) fn delimiter(file: &str) -> u8 {
    if file.to_ascii_lowercase().trim_end_matches(".gz").ends_with(".tsv") { b'\t' } else { b',' }
}

/// Reads a header and the records after it. `data` is the file's text, or a
/// later piece of it with the header put before it: its rows' line numbers
/// are shifted by `line_offset`. Whether the header names the raw columns
/// (false: the file is rejected by its header, or has none).
pub(super) fn parse_csv(
    file: &str,
    data: &[u8],
    max_text_bytes: usize,
    line_offset: i64,
    b: &mut RawBuilder,
    out: &mut ParsedFile,
) -> bool {
    let delim = delimiter(file);
    let mut rdr = reader(data, delim);
    let mut rec = csv::ByteRecord::new();
    let headers: Vec<String> = match rdr.read_byte_record(&mut rec) {
        Ok(true) => rec.iter().map(|f| String::from_utf8_lossy(f).trim().to_string()).collect(),
        Ok(false) => return false, // empty file
        Err(e) => {
            out.rejects.push(Reject::new(file, Some(1), format!("unreadable CSV header: {e}"), &[]));
            return false;
        }
    };
    if headers.iter().all(|h| h.is_empty()) {
        return false;
    }
    let doubled = super::doubled_raw_columns(headers.iter().map(String::as_str));
    if !doubled.is_empty() {
        let reason = format!(
            "CSV header has more than one column named {}; which one to read is ambiguous: rename or drop the others",
            doubled.join(", ")
        );
        out.rejects.push(Reject::new(file, Some(1), reason, headers.join(",").as_bytes()));
        return false;
    }
    let required: Vec<&str> = schema::RAW.iter().filter(|c| !c.nullable).map(|c| c.name).collect();
    let missing: Vec<&str> = required.iter().copied().filter(|c| !headers.iter().any(|h| h == c)).collect();
    if !missing.is_empty() {
        out.rejects.push(Reject::new(
            file,
            Some(1),
            format!(
                "CSV header lacks required column(s) {}; the header must name {}",
                missing.join(", "),
                required.join(", ")
            ),
            headers.join(",").as_bytes(),
        ));
        return false;
    }
    for h in &headers {
        if !schema::RAW.iter().any(|c| c.name == h) {
            out.extra_fields.insert(h.clone());
        }
    }
    let rows = Rows { file, headers: &headers, delim, max_text_bytes };
    // after a runaway quote, read again from the line after it
    let mut offset = rdr.position().byte() as usize;
    let mut line = rdr.position().line() as i64 + line_offset;
    while offset < data.len() {
        match rows.read(&data[offset..], line, b, out) {
            None => break,
            Some((skip, lines)) => {
                offset += skip;
                line += lines;
            }
        }
    }
    true
}

/// Where the first (`last == false`) or the last record of `data` ends: just
/// after a line break outside quotes.
pub(super) fn record_end(data: &[u8], delim: u8, last: bool) -> Option<usize> {
    let mut end = None;
    scan_quotes(data, delim, |i| {
        end = Some(i);
        last
    });
    end
}

struct Rows<'a> {
    file: &'a str,
    headers: &'a [String],
    delim: u8,
    max_text_bytes: usize,
}

impl Rows<'_> {
    /// Reads the records of `data`, whose first line is line `first_line` of
    /// the file. Returns where to resume (bytes and lines to skip) after a
    /// runaway quote, or `None` at the end.
    fn read(&self, data: &[u8], first_line: i64, b: &mut RawBuilder, out: &mut ParsedFile) -> Option<(usize, i64)> {
        let mut rdr = reader(data, self.delim);
        let mut rec = csv::ByteRecord::new();
        loop {
            let start = rdr.position().byte() as usize;
            let start_line = first_line + rdr.position().line() as i64 - 1;
            match rdr.read_byte_record(&mut rec) {
                Ok(false) => return None,
                Ok(true) => {
                    // the record's own position skips blank lines before it
                    let (mut start, mut start_line) = rec
                        .position()
                        .map(|p| (p.byte() as usize, first_line + p.line() as i64 - 1))
                        .unwrap_or((start, start_line));
                    let end = (rdr.position().byte() as usize).min(data.len());
                    // after a CRLF record the reader stands on its LF: the record starts after it
                    while start < end && matches!(data[start], b'\r' | b'\n') {
                        start_line += i64::from(data[start] == b'\n');
                        start += 1;
                    }
                    let raw = trim_eol(&data[start..end]);
                    let spans_lines = raw.contains(&b'\n');
                    let runaway = if unterminated_quote(raw, self.delim) {
                        Some("a quoted field opened on this line never closes")
                    } else if spans_lines && raw.len() > self.max_text_bytes {
                        Some("a quoted field runs over several lines past the text limit (a quote is likely missing)")
                    } else if spans_lines && raw.split(|c| *c == b'\n').skip(1).any(|l| self.is_record(l)) {
                        Some(
                            "a quoted field opened on this line runs into a later line that is a record of its own (a closing quote is likely missing)",
                        )
                    } else {
                        None
                    };
                    if let Some(why) = runaway {
                        let first = raw.split(|c| *c == b'\n').next().unwrap_or(raw);
                        let first_len = first.len() + 1; // with its newline
                        out.rejects.push(Reject::new(
                            self.file,
                            Some(start_line),
                            format!(
                                "malformed CSV: {why}; only this line is rejected and reading resumes on the next \
                                 (inside a quoted field, write a quote as \"\")"
                            ),
                            trim_eol(first),
                        ));
                        b.maybe_flush(out);
                        return Some((start + first_len, start_line - first_line + 1));
                    }
                    self.record(&rec, start_line, raw, b, out);
                }
                Err(e) => {
                    out.rejects.push(Reject::new(self.file, Some(start_line), format!("malformed CSV: {e}"), &[]));
                    if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                        return None;
                    }
                }
            }
            b.maybe_flush(out);
        }
    }

    /// Whether one physical line is a complete, valid record by itself.
    fn is_record(&self, line: &[u8]) -> bool {
        let mut rdr = reader(trim_eol(line), self.delim);
        let mut rec = csv::ByteRecord::new();
        if !matches!(rdr.read_byte_record(&mut rec), Ok(true)) || rec.len() != self.headers.len() {
            return false;
        }
        let Ok(map) = self.fields(&rec) else { return false };
        RawBuilder::new(self.max_text_bytes).push_json(&map, &mut BTreeSet::new()).is_ok()
    }

    /// A record's fields by header name (empty fields left out, as NULL); the
    /// error names the first field that is not UTF-8.
    fn fields(&self, rec: &csv::ByteRecord) -> std::result::Result<serde_json::Map<String, Value>, String> {
        let mut map = serde_json::Map::new();
        for (h, f) in self.headers.iter().zip(rec.iter()) {
            match std::str::from_utf8(f) {
                Ok("") => {}
                Ok(s) => {
                    map.insert(h.clone(), Value::String(s.to_string()));
                }
                Err(_) => return Err(format!("field {h}: invalid UTF-8; records must be UTF-8")),
            }
        }
        Ok(map)
    }

    fn record(&self, rec: &csv::ByteRecord, line: i64, raw: &[u8], b: &mut RawBuilder, out: &mut ParsedFile) {
        if rec.len() != self.headers.len() {
            out.rejects.push(Reject::new(
                self.file,
                Some(line),
                format!("expected {} fields as in the header, got {}", self.headers.len(), rec.len()),
                raw,
            ));
            return;
        }
        let map = match self.fields(rec) {
            Ok(m) => m,
            Err(reason) => {
                out.rejects.push(Reject::new(self.file, Some(line), reason, raw));
                return;
            }
        };
        if let Err(reason) = b.push_json(&map, &mut BTreeSet::new()) {
            out.rejects.push(Reject::new(self.file, Some(line), reason, raw));
        }
    }
}

fn trim_eol(s: &[u8]) -> &[u8] {
    let s = s.strip_suffix(b"\n").unwrap_or(s);
    s.strip_suffix(b"\r").unwrap_or(s)
}

/// Whether a record's bytes end inside a quoted field.
fn unterminated_quote(raw: &[u8], delim: u8) -> bool {
    scan_quotes(raw, delim, |_| true)
}

/// Walks `data` with the CSV quote rules (a quote opens a field only at its
/// start; `""` inside is a literal quote), calling `at_break` with the index
/// after each line break outside quotes until it returns false; whether the
/// walk ended inside a quoted field.
fn scan_quotes(data: &[u8], delim: u8, mut at_break: impl FnMut(usize) -> bool) -> bool {
    let (mut in_quotes, mut field_start) = (false, true);
    let mut i = 0;
    while i < data.len() {
        let c = data[i];
        if in_quotes {
            if c == b'"' {
                if data.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    in_quotes = false;
                }
            }
        } else if c == b'"' && field_start {
            in_quotes = true;
            field_start = false;
        } else {
            if c == b'\n' && !at_break(i + 1) {
                return false;
            }
            field_start = c == delim || c == b'\n' || c == b'\r';
        }
        i += 1;
    }
    in_quotes
}

#[cfg(test)]
mod tests {
    use super::{record_end, unterminated_quote};

    #[test]
    fn records_end_at_line_breaks_outside_quotes() {
        let data = b"h1,h2\n1,\"two\nlines\"\n2,x\n3,\"open\n";
        assert_eq!(record_end(data, b',', false), Some(6), "the header");
        assert_eq!(record_end(data, b',', true), Some(24), "not inside the open quote of the last line");
        assert_eq!(record_end(b"1,\"a\nb", b',', true), None);
        assert_eq!(record_end(b"1,my 5\" tv\n2", b',', true), Some(11), "a quote inside a field is literal");
    }

    #[test]
    fn quote_balance() {
        assert!(!unterminated_quote(b"1,\"a, b\",x", b','));
        assert!(!unterminated_quote(b"1,my 5\" tv,x", b','), "a quote inside an unquoted field is literal");
        assert!(!unterminated_quote(b"1,\"say \"\"hi\"\"\",x", b','));
        assert!(!unterminated_quote(b"1,\"two\nlines\",x", b','));
        assert!(unterminated_quote(b"1,\"never closed,x\n2,b,y", b','));
        assert!(unterminated_quote(b"1,\"ends \"\"", b','));
    }
}
