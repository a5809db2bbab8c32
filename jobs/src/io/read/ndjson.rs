//! NDJSON records: one JSON object per line, or several concatenated
//! (Firehose writes records back to back without a separator).

use serde_json::Value;

use super::record::RawBuilder;
use super::{ParsedFile, Reject};

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the records of `data`, whose lines follow `lines_before` lines of the file.
pub(super) fn parse_ndjson(file: &str, data: &[u8], lines_before: i64, b: &mut RawBuilder, out: &mut ParsedFile) {
    for (i, raw_line) in data.split(|c| *c == b'\n').enumerate() {
        let line_no = lines_before + (i + 1) as i64;
        let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                out.rejects.push(Reject::new(
                    file,
                    Some(line_no),
                    format!("invalid UTF-8 at byte {} of the line; records must be UTF-8 JSON", e.valid_up_to()),
                    line,
                ));
                continue;
            }
        };
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        loop {
            let start = stream.byte_offset();
            match stream.next() {
                None => break,
                Some(Ok(Value::Object(map))) => {
                    let rec = &text.as_bytes()[start..stream.byte_offset()];
                    if let Err(reason) = b.push_json(&map, &mut out.extra_fields) {
                        out.rejects.push(Reject::new(file, Some(line_no), reason, rec));
                    }
                }
                Some(Ok(v)) => {
                    let rec = &text.as_bytes()[start..stream.byte_offset()];
                    out.rejects.push(Reject::new(
                        file,
                        Some(line_no),
                        format!("expected a JSON object per record, got {}", json_kind(&v)),
                        rec,
                    ));
                }
                Some(Err(e)) => {
                    out.rejects.push(Reject::new(
                        file,
                        Some(line_no),
                        format!("malformed JSON: {e}"),
                        &text.as_bytes()[start..],
                    ));
                    break;
                }
            }
        }
        b.maybe_flush(out);
    }
}
