//! SQL files of `sql/`, loaded by name, with values passed as `$params`.
//!
//! The files are compiled into the binary so it runs from any directory;
//! `SENTIFLOW_SQL_DIR` points at a directory to use edited copies instead.

use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::IntervalMonthDayNano;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;

use crate::{Error, Result};

const FILES: &[(&str, &str)] = &[
    ("score", include_str!("../../sql/score.sql")),
    ("window_source_aggs", include_str!("../../sql/window_source_aggs.sql")),
    ("windows_by_source", include_str!("../../sql/windows_by_source.sql")),
    ("windows", include_str!("../../sql/windows.sql")),
    ("term_panes", include_str!("../../sql/term_panes.sql")),
    ("window_term_counts", include_str!("../../sql/window_term_counts.sql")),
    ("window_terms", include_str!("../../sql/window_terms.sql")),
    ("bench_scored_view", include_str!("../../sql/bench_scored_view.sql")),
    ("bench_scan", include_str!("../../sql/bench_scan.sql")),
    ("report_windows", include_str!("../../sql/report_windows.sql")),
    ("report_summary", include_str!("../../sql/report_summary.sql")),
    ("report_sources", include_str!("../../sql/report_sources.sql")),
    ("report_distribution", include_str!("../../sql/report_distribution.sql")),
    ("report_extremes", include_str!("../../sql/report_extremes.sql")),
    ("report_alerts", include_str!("../../sql/report_alerts.sql")),
    ("report_driver_windows", include_str!("../../sql/report_driver_windows.sql")),
    ("report_drivers", include_str!("../../sql/report_drivers.sql")),
    ("report_rejected", include_str!("../../sql/report_rejected.sql")),
    ("eval_probs", include_str!("../../sql/eval_probs.sql")),
    ("eval_labels", include_str!("../../sql/eval_labels.sql")),
    ("compare", include_str!("../../sql/compare.sql")),
    ("stream_merge", include_str!("../../sql/stream_merge.sql")),
];

/// A timestamp `$param` value (µs, UTC), the type of every time column.
pub fn timestamp_param(t: DateTime<Utc>) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), Some("UTC".into()))
}

/// An interval `$param` value.
pub fn interval_param(d: chrono::Duration) -> ScalarValue {
    let nanos = d.num_nanoseconds().unwrap_or(i64::MAX);
    ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, nanos)))
}

/// Returns the text of `sql/<name>.sql`.
pub fn load(name: &str) -> Result<String> {
    if let Some(dir) = std::env::var_os("SENTIFLOW_SQL_DIR") {
        let path = std::path::Path::new(&dir).join(format!("{name}.sql"));
        return std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.display().to_string(), source });
    }
    FILES.iter().find(|(n, _)| *n == name).map(|(_, s)| s.to_string()).ok_or_else(|| Error::UnknownSql {
        name: name.to_string(),
        known: FILES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
    })
}

/// Plans `sql/<name>.sql` with named parameters (`$name` in the file).
pub async fn query(ctx: &SessionContext, name: &str, params: Vec<(&str, ScalarValue)>) -> Result<DataFrame> {
    let text = load(name)?;
    let sql_err = |source| Error::Sql { name: format!("sql/{name}.sql"), source };
    let df = ctx.sql(&text).await.map_err(sql_err)?;
    if params.is_empty() {
        return Ok(df);
    }
    df.with_param_values(params).map_err(sql_err)
}

/// Splits a script into statements on ';' outside quotes ('…', "…"),
/// dollar-quoted strings ($$…$$, $tag$…$tag$) and comments (-- …, /* … */,
/// nested), which are left out of the statements.
pub fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let b = script.as_bytes();
    let mut i = 0;
    let mut start = 0;
    let push = |out: &mut Vec<String>, cur: &mut String, piece: &str| {
        cur.push_str(piece);
        if !cur.trim().is_empty() {
            out.push(cur.trim().to_string());
        }
        cur.clear();
    };
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2; // doubled quote inside
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                cur.push_str(&script[start..i]);
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                start = i; // comments are left out: a statement of comments only is none
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                cur.push_str(&script[start..i]);
                cur.push(' ');
                let mut depth = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                start = i.min(b.len());
            }
            b'$' => {
                // $tag$ … $tag$ where tag is empty or an identifier (not $1, a parameter)
                let tag_end = b[i + 1..].iter().position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
                match tag_end.map(|n| i + 1 + n) {
                    Some(j) if b[j] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                        let tag = &script[i..=j];
                        match script[j + 1..].find(tag) {
                            Some(k) => i = j + 1 + k + tag.len(),
                            None => i = b.len(),
                        }
                    }
                    _ => i += 1,
                }
            }
            b';' => {
                push(&mut out, &mut cur, &script[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push(&mut out, &mut cur, &script[start.min(script.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::split_statements as statements;

    #[test]
    fn splits_statements() {
        let s = statements("SELECT ';' AS a; -- c;omment\nSELECT 2;\n\n");
        assert_eq!(s, vec!["SELECT ';' AS a", "SELECT 2"]);
        assert_eq!(statements("select 1 /* ; */ as a"), vec!["select 1   as a"]);
        assert_eq!(
            statements("select 1 /* a /* ; */ ; */ as a; select 2; -- end"),
            vec!["select 1   as a", "select 2"]
        );
        assert_eq!(statements("select $$a;b$$; select $t$ ; $t$"), vec!["select $$a;b$$", "select $t$ ; $t$"]);
        assert_eq!(statements("select $1; select 'it''s;'"), vec!["select $1", "select 'it''s;'"]);
        assert_eq!(statements("select \"a;b\" from t"), vec!["select \"a;b\" from t"]);
        assert_eq!(statements("select 'unterminated;"), vec!["select 'unterminated;"]);
    }
}
