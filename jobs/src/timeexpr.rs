//! Time templates for scheduled runs: `{now-1h|%Y-%m-%d}` in a location or a
//! `--from`/`--to` value becomes a date computed when the job starts, so an ECS
//! schedule or a Batch array job passes plain arguments and needs no shell.
//!
//! `{EXPR}` or `{EXPR|FORMAT}`: EXPR is a base — `now`, `hour` (start of the
//! current hour), `today` (midnight UTC), a date `YYYY-MM-DD` or an RFC 3339
//! time — followed by any number of `+DURATION`/`-DURATION` (`30s`, `5m`,
//! `1h30m`, `7d`); FORMAT is a chrono strftime pattern (default `%Y-%m-%d`).
//! Inside the braces, `${VAR}` is replaced by the environment variable first
//! (an AWS Batch array child: `{${BACKFILL_START}+${AWS_BATCH_JOB_ARRAY_INDEX}d}`).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Timelike, Utc};

use crate::{Error, Result};

/// `30s`, `5m`, `1h30m`, `7d`, `500ms`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 30s, 5m, 1h30m or 7d");
    let mut total = Duration::zero();
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    if chars.peek().is_none() {
        return Err(bad());
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                Duration::milliseconds(n)
            }
            ('s', _) => Duration::seconds(n),
            ('m', _) => Duration::minutes(n),
            ('h', _) => Duration::hours(n),
            ('d', _) => Duration::days(n),
            _ => return Err(bad()),
        };
        total += unit;
    }
    if !num.is_empty() {
        return Err(format!("{s:?} needs a unit (s, m, h, d, ms)"));
    }
    Ok(total)
}

fn err(template: &str, reason: impl Into<String>) -> Error {
    Error::TimeTemplate { template: template.to_string(), reason: reason.into() }
}

/// Replaces `${VAR}` by the variable's value.
fn substitute_env(template: &str, s: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').ok_or_else(|| err(template, "unclosed ${"))? + i;
        let var = &rest[i + 2..end];
        let val = std::env::var(var).map_err(|_| err(template, format!("environment variable {var} is not set")))?;
        out.push_str(val.trim());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Evaluates one expression (the part before `|`).
fn eval(template: &str, expr: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let expr = expr.trim();
    // the base runs up to the first + or - that follows it (dates contain '-': skip 10 chars)
    let split = |from: usize| expr[from..].find(['+', '-']).map(|i| i + from).unwrap_or(expr.len());
    let date_like = expr.len() >= 10 && NaiveDate::parse_from_str(&expr[..10], "%Y-%m-%d").is_ok();
    let cut = if date_like { split(10) } else { split(0) };
    let (base, mut ops) = expr.split_at(cut);
    let mut t = match base.trim() {
        "now" => now,
        "hour" => now.with_nanosecond(0).and_then(|t| t.with_second(0)).and_then(|t| t.with_minute(0)).unwrap_or(now),
        "today" => Utc.from_utc_datetime(&now.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default()),
        b => DateTime::parse_from_rfc3339(b)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| {
                NaiveDate::parse_from_str(b, "%Y-%m-%d")
                    .map(|d| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default()))
            })
            .map_err(|_| err(template, format!("{b:?} is not now, hour, today, a date or an RFC 3339 time")))?,
    };
    while !ops.is_empty() {
        let sign = &ops[..1];
        let next = ops[1..].find(['+', '-']).map(|i| i + 1).unwrap_or(ops.len());
        let d = parse_duration(&ops[1..next]).map_err(|e| err(template, e))?;
        t = if sign == "+" { t + d } else { t - d };
        ops = &ops[next..];
    }
    Ok(t)
}

/// Expands every `{…}` template of `s` at time `now`; text outside braces
/// (including a `${VAR}` there) is kept as it is.
pub fn expand_at(s: &str, now: DateTime<Utc>) -> Result<String> {
    let c: Vec<char> = s.chars().collect();
    let n = c.len();
    let var_at = |i: usize| c[i] == '$' && i + 1 < n && c[i + 1] == '{';
    let mut out = String::new();
    let mut i = 0;
    while i < n {
        if var_at(i) {
            let end = (i..n).find(|&j| c[j] == '}').unwrap_or(n - 1);
            out.extend(&c[i..=end]);
            i = end + 1;
            continue;
        }
        if c[i] != '{' {
            out.push(c[i]);
            i += 1;
            continue;
        }
        // the matching '}', skipping the braces of ${VAR}
        let (mut j, mut depth) = (i + 1, 0);
        while j < n {
            if var_at(j) {
                depth += 1;
                j += 2;
                continue;
            }
            if c[j] == '}' {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            j += 1;
        }
        if j >= n {
            return Err(err(s, "unclosed {"));
        }
        let body = substitute_env(s, &c[i + 1..j].iter().collect::<String>())?;
        let (expr, fmt) = body.split_once('|').unwrap_or((&body, "%Y-%m-%d"));
        let t = eval(s, expr, now)?;
        use std::fmt::Write;
        write!(out, "{}", t.format(fmt)).map_err(|_| err(s, format!("bad format {fmt:?}")))?;
        i = j + 1;
    }
    Ok(out)
}

/// [`expand_at`] with the current time.
pub fn expand(s: &str) -> Result<String> {
    expand_at(s, Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-01T00:20:05Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn templates_expand_relative_to_now() {
        let x = |s: &str| expand_at(s, at()).unwrap();
        assert_eq!(
            x("s3://b/firehose/dt={now-1h|%Y-%m-%d}/hour={now-1h|%H}/"),
            "s3://b/firehose/dt=2025-02-28/hour=23/"
        );
        assert_eq!(x("{today}"), "2025-03-01");
        assert_eq!(x("{hour-30m|%H:%M}"), "23:30");
        assert_eq!(x("{2025-02-01+3d}"), "2025-02-04");
        assert_eq!(x("{2025-02-01T10:00:00Z-1h|%H}"), "09");
        assert_eq!(x("no templates, ${HOME} stays"), "no templates, ${HOME} stays");
    }

    #[test]
    #[allow(unsafe_code)]
    fn env_variables_inside_templates() {
        // SAFETY: the variables are unique to this test
        unsafe {
            std::env::set_var("SENTIFLOW_T_START", "2025-02-01");
            std::env::set_var("SENTIFLOW_T_INDEX", "9");
        }
        assert_eq!(expand_at("{${SENTIFLOW_T_START}+${SENTIFLOW_T_INDEX}d}", at()).unwrap(), "2025-02-10");
        let e = expand_at("{${SENTIFLOW_T_UNSET}+1d}", at()).unwrap_err().to_string();
        assert!(e.contains("SENTIFLOW_T_UNSET is not set"), "{e}");
    }

    #[test]
    fn bad_templates_are_errors() {
        for bad in ["{yesterday}", "{now-1x}", "{now", "{2025-02-30}"] {
            assert!(expand_at(bad, at()).is_err(), "{bad}");
        }
    }
}
