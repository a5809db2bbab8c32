//! `sentiflow compare`: how two scorers agree on the same tweets (e.g. the
//! ONNX model and an LLM): sign agreement, label agreement, Spearman's rank
//! correlation, and each one's accuracy against the ground truth where the
//! data has one.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float64Type;

use crate::context::JobContext;
use crate::io::store::Location;
use crate::schema::Table;
use crate::tables::register_parquet_table;
use crate::{Error, Result, sql};

#[derive(Debug, Clone)]
pub struct CompareArgs {
    /// Data roots holding `scored/`.
    pub a: String,
    pub b: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompareReport {
    pub a_scorer: String,
    pub b_scorer: String,
    /// Tweets in both tables.
    pub joined: usize,
    /// Tweets both scorers scored (non-NULL).
    pub both_scored: usize,
    /// Same sign, among tweets both scored as non-zero.
    pub sign_agreement: f64,
    pub sign_pairs: usize,
    /// Same label (negative/neutral/positive).
    pub label_agreement: f64,
    pub spearman: f64,
    /// (accuracy of a, accuracy of b, rows) on tweets whose truth is negative or positive,
    /// a scorer's label taken as its sign.
    pub truth: Option<(f64, f64, usize)>,
}

/// Ranks with ties given their average rank (1-based).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.len() < 2 {
        return f64::NAN;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx.sqrt() * syy.sqrt())
}

/// Spearman's rank correlation (Pearson on average ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

pub async fn run(jc: &JobContext, args: CompareArgs) -> Result<CompareReport> {
    for (name, root) in [("a_scored", &args.a), ("b_scored", &args.b)] {
        let loc = Location::parse(root)?.child(Table::Scored.dir());
        if !jc.has_files(&loc).await? {
            return Err(Error::NoInput { location: loc.display });
        }
        register_parquet_table(jc, name, Table::Scored, &loc)?;
    }
    let batches = crate::io::diagnose::collect(sql::query(&jc.ctx, "compare", vec![]).await?).await?;
    let mut r = CompareReport::default();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let (mut same_label, mut signs, mut same_sign) = (0usize, 0usize, 0usize);
    let (mut truth_n, mut truth_a, mut truth_b) = (0usize, 0usize, 0usize);
    for b in &batches {
        let (a_s, b_s) = (b.column(1).as_primitive::<Float64Type>(), b.column(2).as_primitive::<Float64Type>());
        let (a_l, b_l, truth) =
            (b.column(3).as_string::<i32>(), b.column(4).as_string::<i32>(), b.column(5).as_string::<i32>());
        if r.a_scorer.is_empty() && b.num_rows() > 0 {
            r.a_scorer = b.column(6).as_string::<i32>().value(0).to_string();
            r.b_scorer = b.column(7).as_string::<i32>().value(0).to_string();
        }
        for i in 0..b.num_rows() {
            r.joined += 1;
            if a_s.is_null(i) || b_s.is_null(i) {
                continue;
            }
            let (x, y) = (a_s.value(i), b_s.value(i));
            xs.push(x);
            ys.push(y);
            if a_l.value(i) == b_l.value(i) {
                same_label += 1;
            }
            if x != 0.0 && y != 0.0 {
                signs += 1;
                if (x > 0.0) == (y > 0.0) {
                    same_sign += 1;
                }
            }
            if !truth.is_null(i) && truth.value(i) != "neutral" {
                truth_n += 1;
                let pos = truth.value(i) == "positive";
                truth_a += usize::from((x > 0.0) == pos && x != 0.0);
                truth_b += usize::from((y > 0.0) == pos && y != 0.0);
            }
        }
    }
    r.both_scored = xs.len();
    r.sign_pairs = signs;
    r.sign_agreement = same_sign as f64 / signs.max(1) as f64;
    r.label_agreement = same_label as f64 / xs.len().max(1) as f64;
    r.spearman = spearman(&xs, &ys);
    if truth_n > 0 {
        r.truth = Some((truth_a as f64 / truth_n as f64, truth_b as f64 / truth_n as f64, truth_n));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_matches_hand_computed_values() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // ties: ranks [1.5, 1.5, 3, 4] vs [1, 2, 3, 4] -> 0.9486833
        assert!((spearman(&[5.0, 5.0, 6.0, 7.0], &[1.0, 2.0, 3.0, 4.0]) - 0.948_683_298).abs() < 1e-6);
        assert_eq!(ranks(&[3.0, 1.0, 3.0]), vec![2.5, 1.0, 2.5]);
    }
}
