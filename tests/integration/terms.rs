//! window_terms: what drove each window, through the binary, checked against
//! an independent oracle of the formula, the sample's planted story, and bad input.

use std::collections::{BTreeMap, BTreeSet};

use sentiflow_jobs::job::generate::EVENTS;
use sentiflow_jobs::schema::Table;
use sentiflow_jobs::window::TERM_PRIOR_ALPHA0;

use crate::common::*;

/// Fightin' Words (Monroe, Colaresi & Quinn 2008), eqs. 16 and 20: the z-score of
/// the log-odds of a term in group i against group j with prior `a` (of `a0`).
fn fightin_words(yi: f64, ni: f64, yj: f64, nj: f64, a: f64, a0: f64) -> f64 {
    let delta = ((yi + a) / (ni + a0 - yi - a)).ln() - ((yj + a) / (nj + a0 - yj - a)).ln();
    delta / (1.0 / (yi + a) + 1.0 / (yj + a)).sqrt()
}

/// (window_start, term)
type Key = (String, String);
/// (n, share_negative, lift, neg_lift)
type Figures = (i64, f64, f64, f64);
/// The rows of window_terms.
type TermRows = BTreeMap<Key, Figures>;
/// A tweet of the hand-computed example: (window, its terms, negative?).
type Tweet<'a> = (&'a str, &'a [&'a str], bool);

fn window_terms(root: &str) -> TermRows {
    let csv = sql_csv(root, "SELECT window_start, term, n, share_negative, lift, neg_lift FROM window_terms");
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let num = |i: usize| f[i].parse::<f64>().unwrap_or(f64::NAN);
            ((f[0].to_string(), f[1].to_string()), (f[2].parse().unwrap(), num(3), num(4), num(5)))
        })
        .collect()
}

#[test]
fn a_hand_computed_example_equals_the_formula() {
    let d = tmp();
    let input = d.path().join("in.json");
    // two 5-minute windows; words apart (commas), so no bigrams; (window, text)
    let tweets = [
        ("10:00", "alpha, beta, terrible", ["alpha", "beta", "terrible"].as_slice()),
        ("10:01", "alpha, terrible", &["alpha", "terrible"]),
        ("10:02", "Alpha, gamma", &["alpha", "gamma"]),
        ("10:03", "beta, great", &["beta", "great"]),
        ("10:05", "gamma, great", &["gamma", "great"]),
        ("10:06", "gamma, delta", &["gamma", "delta"]),
        ("10:07", "delta, terrible", &["delta", "terrible"]),
        ("10:08", "beta", &["beta"]),
    ];
    let lines: Vec<String> = tweets
        .iter()
        .enumerate()
        .map(|(i, (t, text, _))| {
            format!(
                r#"{{"tweet_id":"t{i}","created_at":"2025-03-01T{t}:00Z","text":"{text}","source":"x","lang":"en"}}"#
            )
        })
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let root = s(&d.path().join("out"));
    ok(&["score", "--scorer", "lexicon", "--input", &s(&input), "--out", &root]);
    // the labels the scorer gave, read back (the oracle needs them, not a guess)
    let labels: BTreeMap<String, String> = sql_csv(&root, "SELECT tweet_id, sentiment_label FROM scored_tweets")
        .lines()
        .skip(1)
        .map(|l| l.split_once(',').map(|(a, b)| (a.to_string(), b.to_string())).unwrap())
        .collect();
    assert!(labels.values().any(|l| l == "negative") && labels.values().any(|l| l != "negative"), "{labels:?}");

    // (window, terms, negative?) per tweet, from the hand-written term sets
    let rows: Vec<Tweet> = tweets
        .iter()
        .enumerate()
        .map(|(i, (t, _, terms))| {
            let w = if *t < "10:05" { "2025-03-01T10:00:00Z" } else { "2025-03-01T10:05:00Z" };
            (w, *terms, labels[&format!("t{i}")] == "negative")
        })
        .collect();
    let oracle = |background: &dyn Fn(&str) -> bool| -> TermRows {
        let mut out = TermRows::new();
        let a0 = TERM_PRIOR_ALPHA0;
        let count = |keep: &dyn Fn(&Tweet) -> bool, term: &str| {
            rows.iter().filter(|r| keep(r) && r.1.contains(&term)).count() as f64
        };
        let total =
            |keep: &dyn Fn(&Tweet) -> bool| rows.iter().filter(|r| keep(r)).map(|r| r.1.len()).sum::<usize>() as f64;
        let windows: BTreeSet<&str> = rows.iter().map(|r| r.0).collect();
        for w in windows {
            let terms: BTreeSet<&str> = rows.iter().filter(|r| r.0 == w).flat_map(|r| r.1.iter().copied()).collect();
            for term in terms {
                let in_w = |r: &Tweet| r.0 == w;
                let in_bg = |r: &Tweet| background(r.0);
                let out_w = |r: &Tweet| background(r.0) && r.0 != w;
                let a = a0 * count(&in_bg, term) / total(&in_bg);
                let lift = fightin_words(count(&in_w, term), total(&in_w), count(&out_w, term), total(&out_w), a, a0);
                let neg = |r: &Tweet| r.0 == w && r.2;
                let other = |r: &Tweet| r.0 == w && !r.2;
                let neg_lift = fightin_words(count(&neg, term), total(&neg), count(&other, term), total(&other), a, a0);
                let n = count(&in_w, term);
                let share = count(&neg, term) / n;
                out.insert((w.to_string(), term.to_string()), (n as i64, share, lift, neg_lift));
            }
        }
        out
    };
    let close = |got: &TermRows, want: &TermRows, what: &str| {
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{what}: the same terms");
        for (k, g) in got {
            let w = want[k];
            assert_eq!(g.0, w.0, "{what} {k:?}: n");
            for (x, y, name) in [(g.1, w.1, "share_negative"), (g.2, w.2, "lift"), (g.3, w.3, "neg_lift")] {
                assert!((x - y).abs() < 1e-9, "{what} {k:?}: {name} {x} != {y}");
            }
        }
    };
    // the whole range as background
    ok(&["aggregate", "--out", &root, "--min-term-count", "1", "--top-terms", "100"]);
    close(&window_terms(&root), &oracle(&|_| true), "whole range");
    // a trailing background of one window: each window against itself alone
    ok(&["aggregate", "--out", &root, "--min-term-count", "1", "--top-terms", "100", "--background", "5m"]);
    let mut want = TermRows::new();
    for w in ["2025-03-01T10:00:00Z", "2025-03-01T10:05:00Z"] {
        want.extend(oracle(&|x| x == w).into_iter().filter(|(k, _)| k.0 == w));
    }
    close(&window_terms(&root), &want, "trailing 5m");
    // top K by lift, ties broken by term; min support
    ok(&["aggregate", "--out", &root, "--min-term-count", "2", "--top-terms", "2"]);
    let got = window_terms(&root);
    let all = oracle(&|_| true);
    for w in ["2025-03-01T10:00:00Z", "2025-03-01T10:05:00Z"] {
        let mut ranked: Vec<(&Key, &Figures)> = all.iter().filter(|(k, v)| k.0 == w && v.0 >= 2).collect();
        ranked.sort_by(|a, b| b.1.2.total_cmp(&a.1.2).then(a.0.1.cmp(&b.0.1)));
        let want: Vec<&String> = ranked.iter().take(2).map(|(k, _)| &k.1).collect();
        let got: Vec<&String> = got.keys().filter(|k| k.0 == w).map(|k| &k.1).collect();
        let want: BTreeSet<&String> = want.into_iter().collect();
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want, "top 2 of {w}");
    }
    // a background that is not whole windows is an error naming the flag
    let (_, err) = fails(&["aggregate", "--out", &root, "--background", "7m"]);
    assert!(err.contains("--background"), "{err}");
}

/// The planted events' words: a term with one of them (`#hack`, `withdrawals halted`,
/// `says withdrawals`) is planted.
const HACK_WORDS: &[&str] = &[
    "#hack",
    "hack",
    "coinvault",
    "withdrawals",
    "halted",
    "hacked",
    "hackers",
    "drained",
    "incident",
    "expected",
    "timeline",
    "notice",
    "says",
];
const ETF_WORDS: &[&str] = &["#etf", "etf", "approved", "approval", "inflows", "ripping", "spot", "starts"];
/// Planted words that other posts use too ("Another exchange hack", "New ETF filing"):
/// they may rank in a quiet window; the others may not.
const ALSO_ELSEWHERE: &[&str] = &["hack", "etf"];

fn planted(term: &str, words: &[&str]) -> bool {
    term.split(' ').any(|w| words.contains(&w))
}

fn event_only(term: &str) -> bool {
    term.split(' ').any(|w| !ALSO_ELSEWHERE.contains(&w) && (HACK_WORDS.contains(&w) || ETF_WORDS.contains(&w)))
}

#[test]
fn the_planted_terms_top_their_windows_and_stay_out_of_quiet_ones() {
    let d = tmp();
    let root = s(d.path());
    let out = ok(&["run", "--scorer", "lexicon", "--out", &root]);
    assert!(out.contains("window_terms/"), "{out}");
    // window start → its terms by lift (then term)
    let csv = sql_csv(&root, "SELECT window_start, term FROM window_terms ORDER BY window_start, lift DESC, term");
    let mut by_window: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in csv.lines().skip(1) {
        let (w, t) = l.split_once(',').unwrap();
        by_window.entry(w.to_string()).or_default().push(t.to_string());
    }
    let (start, span) = (chrono::DateTime::parse_from_rfc3339("2025-02-10T00:00:00Z").unwrap(), 86_400.0);
    let frac = |w: &str| (chrono::DateTime::parse_from_rfc3339(w).unwrap() - start).num_seconds() as f64 / span;
    let (mut inside, mut quiet) = (0, 0);
    for (w, terms) in &by_window {
        let (f, f_end) = (frac(w), frac(w) + 300.0 / span);
        let event = EVENTS.iter().position(|e| f >= e.start && f_end <= e.end);
        let near = EVENTS.iter().any(|e| f_end > e.start - 0.01 && f < e.end + 0.01);
        match event {
            Some(i) => {
                let words = [HACK_WORDS, ETF_WORDS][i];
                assert!(planted(&terms[0], words), "{w} ({}): top terms {terms:?}", EVENTS[i].name);
                inside += 1;
            }
            None if !near => {
                let leaked: Vec<&String> = terms.iter().filter(|t| event_only(t)).collect();
                assert!(leaked.is_empty(), "quiet window {w} names {leaked:?}");
                quiet += 1;
            }
            None => {}
        }
    }
    assert!(inside >= 35 && quiet >= 150, "{inside} event windows, {quiet} quiet ones");
    // the negative drivers of the hack: its terms lead by neg_lift in its most negative window
    let top = sql_csv(
        &root,
        "SELECT t.term FROM window_terms t JOIN windows w ON w.window_start = t.window_start
         WHERE w.window_start = (SELECT window_start FROM windows WHERE n >= 10 ORDER BY share_negative DESC, window_start LIMIT 1)
         ORDER BY t.neg_lift DESC, t.term LIMIT 3",
    );
    let top: Vec<&str> = top.lines().skip(1).collect();
    assert!(top.iter().all(|t| planted(t, HACK_WORDS)), "the most negative window's drivers: {top:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_stays_bounded_and_every_column_has_its_type() {
    let d = tmp();
    let input = d.path().join("in.json");
    let many: String = (0..10_000).map(|i| format!("#tag{i} ")).collect();
    let huge = format!("crash {}", "word ".repeat(200_000));
    let mut lines = vec![
        serde_json::json!({"tweet_id": "many", "created_at": "2025-03-01T10:00:00Z", "text": many, "source": "x"}),
        serde_json::json!({"tweet_id": "huge", "created_at": "2025-03-01T10:00:01Z", "text": huge, "source": "x"}),
        serde_json::json!({"tweet_id": "emoji", "created_at": "2025-03-01T10:00:02Z", "text": "🚀🚀🔥", "source": "x"}),
    ];
    for i in 0..5 {
        lines.push(serde_json::json!({"tweet_id": format!("es{i}"), "created_at": "2025-03-01T10:01:00Z",
            "text": "el bitcoin se está desplomando, qué desastre", "source": "x", "lang": "es"}));
        lines.push(serde_json::json!({"tweet_id": format!("en{i}"), "created_at": "2025-03-01T10:02:00Z",
            "text": "bitcoin crash is terrible", "source": "x", "lang": "en"}));
    }
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&input, text.join("\n")).unwrap();
    let root = s(&d.path().join("out"));
    ok(&["score", "--scorer", "lexicon", "--max-text-bytes", "2000000", "--input", &s(&input), "--out", &root]);
    let t0 = std::time::Instant::now();
    ok(&["aggregate", "--out", &root, "--top-terms", "100"]);
    assert!(t0.elapsed().as_secs() < 60, "bounded time: {:?}", t0.elapsed());
    let b = query(&root, &[Table::WindowTerms], "SELECT * FROM window_terms").await;
    // every column has the schema module's type (dt is the partition key)
    let got: Vec<String> = b[0].schema().fields().iter().map(|f| format!("{}:{}", f.name(), f.data_type())).collect();
    let mut want: Vec<String> =
        Table::WindowTerms.schema().fields().iter().map(|f| format!("{}:{}", f.name(), f.data_type())).collect();
    want.push("dt:Utf8".into());
    assert_eq!(got, want);
    let rows = window_terms(&root);
    // no tag of the 10,000 reaches 3 tweets; a NULL-scored Spanish word counts in n, not in share_negative
    assert!(rows.keys().all(|(_, t)| !t.starts_with("#tag")), "{rows:?}");
    let desplomando = rows.iter().find(|(k, _)| k.1 == "desplomando").expect("the Spanish rows' word").1;
    assert_eq!(desplomando.0, 5);
    assert!(desplomando.1.is_nan(), "share_negative of NULL-scored rows is NULL: {desplomando:?}");
    let bitcoin = rows.iter().find(|(k, _)| k.1 == "bitcoin").expect("bitcoin").1;
    assert_eq!(bitcoin.0, 10, "5 Spanish + 5 English tweets");
    assert!((bitcoin.1 - 1.0).abs() < 1e-12, "all 5 scored ones negative: {bitcoin:?}");
    // the 1 MB text gave its first words only: "crash" and "word" (in 1 tweet, below the support of 3)
    assert!(!rows.keys().any(|(_, t)| t == "word"), "{rows:?}");
    assert!(rows.values().all(|v| v.2.is_finite()), "every lift is a number");
}
