//! The LFW verification protocol: parse `pairs.txt`, and score distances the standard way
//! (per fold, the threshold is chosen on the other folds).

use std::num::ParseIntError;
use std::path::{Path, PathBuf};

/// One pair of images and whether they show the same person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// First image, relative to the images folder (`Name/Name_0001.jpg`).
    pub a: PathBuf,
    /// Second image.
    pub b: PathBuf,
    /// Same person?
    pub same: bool,
    /// Fold index, from 0.
    pub fold: usize,
}

/// Why a `pairs.txt` could not be read. Line numbers count from 1, blank lines included.
#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    /// There is no header line.
    #[error("the pairs file is empty")]
    Empty,
    /// The header is not two numbers.
    #[error("line {line}: header {header:?}: expected two numbers, FOLDS PAIRS")]
    Header {
        /// The header's line.
        line: usize,
        /// The header as written.
        header: String,
        /// Why a field is not a number, if one is not.
        #[source]
        source: Option<ParseIntError>,
    },
    /// An image number is not a number.
    #[error("line {line}: image number {number:?} is not a number")]
    ImageNumber {
        /// The line.
        line: usize,
        /// The field as written.
        number: String,
        /// The parser's error.
        #[source]
        source: ParseIntError,
    },
    /// The file ends before a fold is complete.
    #[error("fold {fold} ends early: expected {expected} pairs")]
    FoldEndsEarly {
        /// The fold, from 1.
        fold: usize,
        /// Pairs a fold holds.
        expected: usize,
    },
    /// A line has the wrong number of fields for its place in the fold.
    #[error("line {line}: {text:?} does not fit fold {fold} position {position} ({expected})")]
    Misplaced {
        /// The line.
        line: usize,
        /// The line as written.
        text: String,
        /// The fold, from 1.
        fold: usize,
        /// The pair's position in the fold, from 1.
        position: usize,
        /// What this position holds.
        expected: &'static str,
    },
}

/// Parses an LFW `pairs.txt`: a header `FOLDS PAIRS_PER_HALF`, then per fold that many
/// matched lines (`Name n1 n2`) followed by as many mismatched ones (`Name1 n1 Name2 n2`).
pub fn parse_pairs(text: &str) -> Result<Vec<Pair>, PairsError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let (header_line, header) = lines.next().ok_or(PairsError::Empty)?;
    let header_error = |source| PairsError::Header {
        line: header_line,
        header: header.to_owned(),
        source,
    };
    let nums: Vec<usize> = header
        .split_whitespace()
        .map(|t| t.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| header_error(Some(e)))?;
    let [folds, per_half] = nums[..] else {
        return Err(header_error(None));
    };
    let image = |name: &str, n: &str, line: usize| -> Result<PathBuf, PairsError> {
        let n: u32 = n.parse().map_err(|source| PairsError::ImageNumber {
            line,
            number: n.to_owned(),
            source,
        })?;
        Ok(Path::new(name).join(format!("{name}_{n:04}.jpg")))
    };
    let mut pairs = Vec::with_capacity(folds * per_half * 2);
    for fold in 0..folds {
        for k in 0..2 * per_half {
            let (i, line) = lines.next().ok_or(PairsError::FoldEndsEarly {
                fold: fold + 1,
                expected: 2 * per_half,
            })?;
            let f: Vec<&str> = line.split_whitespace().collect();
            let matched = k < per_half;
            let pair = match (matched, &f[..]) {
                (true, [name, n1, n2]) => Pair {
                    a: image(name, n1, i)?,
                    b: image(name, n2, i)?,
                    same: true,
                    fold,
                },
                (false, [name1, n1, name2, n2]) => Pair {
                    a: image(name1, n1, i)?,
                    b: image(name2, n2, i)?,
                    same: false,
                    fold,
                },
                _ => {
                    return Err(PairsError::Misplaced {
                        line: i,
                        text: line.to_owned(),
                        fold: fold + 1,
                        position: k + 1,
                        expected: if matched {
                            "a matched pair: Name n1 n2"
                        } else {
                            "a mismatched pair: Name1 n1 Name2 n2"
                        },
                    });
                }
            };
            pairs.push(pair);
        }
    }
    Ok(pairs)
}

/// What the protocol measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Per-fold accuracy (threshold chosen on the other folds), in 0..=1.
    pub fold_accuracy: Vec<f64>,
    /// Per-fold threshold chosen on the other folds.
    pub fold_threshold: Vec<f32>,
    /// Mean of the per-fold accuracies.
    pub accuracy_mean: f64,
    /// Population standard deviation of the per-fold accuracies.
    pub accuracy_std: f64,
    /// The single threshold best over all pairs.
    pub best_threshold: f32,
    /// Accuracy over all pairs at `best_threshold`.
    pub best_accuracy: f64,
    /// Accuracy over all pairs at the given recommended threshold.
    pub accuracy_at_recommended: f64,
    /// True accept rate at a false accept rate of at most 1e-2.
    pub tar_at_far_1e2: f64,
    /// True accept rate at a false accept rate of at most 1e-3.
    pub tar_at_far_1e3: f64,
    /// Mean distance of same-person pairs.
    pub mean_same: f64,
    /// Mean distance of different-person pairs.
    pub mean_different: f64,
}

/// Same person when `distance < threshold`.
fn accuracy(items: &[(f32, bool)], threshold: f32) -> f64 {
    if items.is_empty() {
        return 0.0;
    }
    let right = items
        .iter()
        .filter(|(d, same)| (*d < threshold) == *same)
        .count();
    right as f64 / items.len() as f64
}

/// The threshold with the best accuracy on `items`: every midpoint between consecutive
/// distinct distances is tried (exact, O(n log n)).
pub fn best_threshold(items: &[(f32, bool)]) -> (f32, f64) {
    let mut sorted: Vec<(f32, bool)> = items.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = sorted.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let different = sorted.iter().filter(|(_, s)| !s).count();
    // Threshold below everything: every pair says "different".
    let mut right = different;
    let mut best = (sorted[0].0 - 1e-3, right);
    for i in 0..n {
        // Moving the threshold above sorted[i] flips it to "same".
        if sorted[i].1 {
            right += 1;
        } else {
            right -= 1;
        }
        let next_differs = i + 1 == n || sorted[i + 1].0 > sorted[i].0;
        if next_differs && right > best.1 {
            let t = if i + 1 == n {
                sorted[i].0 + 1e-3
            } else {
                (sorted[i].0 + sorted[i + 1].0) / 2.0
            };
            best = (t, right);
        }
    }
    (best.0, best.1 as f64 / n as f64)
}

/// Scores `distances` (one per pair, same order) by the standard protocol.
pub fn score(pairs: &[Pair], distances: &[f32], recommended: f32) -> Scores {
    let items: Vec<(f32, bool)> = distances
        .iter()
        .copied()
        .zip(pairs.iter().map(|p| p.same))
        .collect();
    let folds = pairs.iter().map(|p| p.fold + 1).max().unwrap_or(0);
    let mut fold_accuracy = Vec::with_capacity(folds);
    let mut fold_threshold = Vec::with_capacity(folds);
    for fold in 0..folds {
        let (test, train): (Vec<_>, Vec<_>) =
            items.iter().zip(pairs).partition(|(_, p)| p.fold == fold);
        let train: Vec<(f32, bool)> = train.into_iter().map(|(i, _)| *i).collect();
        let test: Vec<(f32, bool)> = test.into_iter().map(|(i, _)| *i).collect();
        // With a single fold there is nothing else to train on: use the fold itself.
        let (t, _) = best_threshold(if train.is_empty() { &test } else { &train });
        fold_threshold.push(t);
        fold_accuracy.push(accuracy(&test, t));
    }
    let k = fold_accuracy.len().max(1) as f64;
    let accuracy_mean = fold_accuracy.iter().sum::<f64>() / k;
    let accuracy_std = (fold_accuracy
        .iter()
        .map(|a| (a - accuracy_mean).powi(2))
        .sum::<f64>()
        / k)
        .sqrt();
    let (best_threshold, best_accuracy) = best_threshold(&items);
    let mean_of = |same: bool| {
        let v: Vec<f64> = items
            .iter()
            .filter(|i| i.1 == same)
            .map(|i| f64::from(i.0))
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    Scores {
        accuracy_mean,
        accuracy_std,
        fold_accuracy,
        fold_threshold,
        best_threshold,
        best_accuracy,
        accuracy_at_recommended: accuracy(&items, recommended),
        tar_at_far_1e2: tar_at_far(&items, 1e-2),
        tar_at_far_1e3: tar_at_far(&items, 1e-3),
        mean_same: mean_of(true),
        mean_different: mean_of(false),
    }
}

/// True accept rate at the largest threshold whose false accept rate is at most `far`.
pub fn tar_at_far(items: &[(f32, bool)], far: f64) -> f64 {
    let mut negatives: Vec<f32> = items.iter().filter(|i| !i.1).map(|i| i.0).collect();
    let positives: Vec<f32> = items.iter().filter(|i| i.1).map(|i| i.0).collect();
    if positives.is_empty() {
        return 0.0;
    }
    negatives.sort_by(f32::total_cmp);
    let threshold = threshold_at_rate(&negatives, far);
    positives.iter().filter(|&&d| d < threshold).count() as f64 / positives.len() as f64
}

/// The largest threshold `t` that accepts (`d < t`) at most the fraction `rate` of the
/// `sorted` (ascending) distances of impostors: `k / n <= rate` for the `k` of them below `t`.
///
/// That is `sorted[k]` for the largest such `k` (values tied with it stay out, so with ties
/// the rate reached may be lower than `rate`); infinite when `rate` allows all of them,
/// including when there are none. `rate` below 0 is taken as 0.
pub fn threshold_at_rate(sorted: &[f32], rate: f64) -> f32 {
    let n = sorted.len();
    let within = |k: usize| k as f64 / n as f64 <= rate;
    // floor(rate * n) up to rounding; settled with the very division the rate is reported by.
    let mut k = ((rate.max(0.0) * n as f64).floor() as usize).min(n);
    while k > 0 && !within(k) {
        k -= 1;
    }
    while k < n && within(k + 1) {
        k += 1;
    }
    sorted.get(k).copied().unwrap_or(f32::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: &str = "2\t2\nA\t1\t2\nB\t1\t3\nA\t1\tB\t2\nC\t4\tD\t1\nE\t1\t2\nF\t1\t2\nE\t1\tF\t1\nG\t1\tH\t1\n";

    #[test]
    fn parses_the_standard_layout() {
        let p = parse_pairs(PAIRS).unwrap();
        assert_eq!(p.len(), 8);
        assert_eq!(p[0].a, Path::new("A/A_0001.jpg"));
        assert_eq!(p[1].b, Path::new("B/B_0003.jpg"));
        assert!(p[0].same && p[1].same && !p[2].same && !p[3].same);
        assert_eq!(p[3].a, Path::new("C/C_0004.jpg"));
        assert_eq!((p[3].fold, p[4].fold), (0, 1));
        assert!(
            parse_pairs("2\t2\nA\t1\t2\n")
                .unwrap_err()
                .to_string()
                .contains("ends early")
        );
        assert!(parse_pairs("x\n").is_err());
    }

    #[test]
    fn parse_errors_say_where_and_what() {
        assert!(matches!(parse_pairs("\n \n"), Err(PairsError::Empty)));
        let err = parse_pairs("\nx 2\n").unwrap_err();
        assert!(
            matches!(
                err,
                PairsError::Header {
                    line: 2,
                    source: Some(_),
                    ..
                }
            ),
            "{err}"
        );
        let err = parse_pairs("1 1 1\n").unwrap_err();
        assert!(
            matches!(err, PairsError::Header { source: None, .. }),
            "{err}"
        );
        let err = parse_pairs("1\t1\n\nA\tone\t2\nA\t1\tB\t2\n").unwrap_err();
        assert!(
            matches!(&err, PairsError::ImageNumber { line: 3, number, .. } if number == "one"),
            "{err}"
        );
        let err = parse_pairs("1\t1\nA\t1\tB\t2\nA\t1\t2\n").unwrap_err();
        assert!(
            matches!(
                err,
                PairsError::Misplaced {
                    line: 2,
                    fold: 1,
                    position: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("Name n1 n2"), "{err}");
    }

    #[test]
    fn threshold_search_is_exact() {
        let items = [
            (0.2, true),
            (0.4, true),
            (0.5, false),
            (0.55, true),
            (0.9, false),
        ];
        let (t, acc) = best_threshold(&items);
        // 0.45 and 0.7 both make one mistake; the lower one is found first.
        assert!((0.4..0.5).contains(&t), "{t}");
        assert!((acc - 0.8).abs() < 1e-12);
        assert_eq!(accuracy(&items, 0.45), 0.8);
    }

    #[test]
    fn folds_choose_thresholds_on_the_other_folds() {
        let pairs = parse_pairs(PAIRS).unwrap();
        // Fold 0 separates at 0.5, fold 1 at 0.7; each is tested with the other's threshold.
        let d = [0.3, 0.4, 0.6, 0.8, 0.6, 0.65, 0.75, 0.9];
        let s = score(&pairs, &d, 0.6);
        assert!(
            (0.65..0.75).contains(&s.fold_threshold[0]),
            "{:?}",
            s.fold_threshold
        );
        assert_eq!(
            s.fold_accuracy[0], 0.75,
            "0.6 is a different pair under ~0.7 -> wrong"
        );
        assert!((0.4..0.6).contains(&s.fold_threshold[1]));
        assert_eq!(s.fold_accuracy[1], 0.5);
        assert_eq!(s.accuracy_mean, 0.625);
        assert!((s.accuracy_std - 0.125).abs() < 1e-12);
        assert_eq!(s.best_accuracy, 1.0 - 1.0 / 8.0);
    }

    #[test]
    fn tar_at_far_counts_accepted_positives() {
        let mut items: Vec<(f32, bool)> = (0..2000)
            .map(|i| (0.5 + i as f32 / 4000.0, false))
            .collect();
        items.extend([(0.1, true), (0.49, true), (0.5006, true), (0.9, true)]);
        // 2 false accepts allowed: threshold = third smallest negative = 0.5005 (strict).
        assert_eq!(tar_at_far(&items, 1e-3), 0.5);
    }
}
