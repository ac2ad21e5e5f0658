//! The in-memory search structure: one contiguous row-major matrix of
//! embeddings per face set, plus token and name metadata.

use std::cmp::Ordering;
use std::collections::HashMap;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::record::{Match, Upsert, validate_name, validate_vector};
use crate::token::FaceToken;

/// Below this many rows a search runs on the calling thread only.
pub const PARALLEL_MIN_ROWS: usize = 20_000;

/// Rows scanned by one parallel task.
const CHUNK_ROWS: usize = 4_096;

/// Lanes of the distance kernel: 16 f32 = four SSE or two AVX registers of
/// independent accumulators, so the adds do not wait on each other.
const LANES: usize = 16;

/// Exact (brute-force) nearest-neighbour search over a contiguous matrix.
///
/// Rows are stored row-major in one `Vec<f32>`; tokens and names live in
/// parallel vectors and a token → row map finds a row to replace or remove.
/// Removal swaps the last row into the hole, so row order is not stable.
///
/// ```
/// use facerec_store::{FaceMatrix, FaceToken};
/// let mut m = FaceMatrix::new(2);
/// m.upsert(&FaceToken::parse("a")?, "Ann", &[0.0, 0.0])?;
/// m.upsert(&FaceToken::parse("b")?, "Bob", &[3.0, 4.0])?;
/// let hits = m.search(&[0.0, 0.0], 6.0, None)?;
/// assert_eq!(hits.iter().map(|h| h.distance).collect::<Vec<_>>(), [0.0, 5.0]);
/// # Ok::<(), facerec_store::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FaceMatrix {
    dims: usize,
    data: Vec<f32>,
    tokens: Vec<FaceToken>,
    names: Vec<Box<str>>,
    index: HashMap<FaceToken, usize>,
}

impl FaceMatrix {
    /// An empty matrix of `dims`-d embeddings.
    pub fn new(dims: usize) -> Self {
        Self::with_capacity(dims, 0)
    }

    /// An empty matrix with room for `rows` faces.
    pub fn with_capacity(dims: usize, rows: usize) -> Self {
        Self {
            dims,
            data: Vec::with_capacity(rows.saturating_mul(dims)),
            tokens: Vec::with_capacity(rows),
            names: Vec::with_capacity(rows),
            index: HashMap::with_capacity(rows),
        }
    }

    /// Values per embedding.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Number of faces.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no faces.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether a face with this token is present.
    pub fn contains(&self, token: &str) -> bool {
        self.index.contains_key(token)
    }

    /// The name and embedding of a face.
    pub fn get(&self, token: &str) -> Option<(&str, &[f32])> {
        let &row = self.index.get(token)?;
        Some((&self.names[row], self.row(row)))
    }

    fn row(&self, row: usize) -> &[f32] {
        &self.data[row * self.dims..(row + 1) * self.dims]
    }

    /// Adds a face, or replaces the name and embedding of the face with the
    /// same token.
    ///
    /// Checks the name (≤ 256 bytes) and embedding (`dims` finite values).
    pub fn upsert(&mut self, token: &FaceToken, name: &str, embedding: &[f32]) -> Result<Upsert> {
        validate_name(name)?;
        validate_vector("embedding", embedding, self.dims)?;
        if let Some(&row) = self.index.get(token) {
            self.data[row * self.dims..(row + 1) * self.dims].copy_from_slice(embedding);
            if *self.names[row] != *name {
                self.names[row] = name.into();
            }
            return Ok(Upsert::Replaced);
        }
        let row = self.tokens.len();
        self.data.extend_from_slice(embedding);
        self.tokens.push(token.clone());
        self.names.push(name.into());
        self.index.insert(token.clone(), row);
        Ok(Upsert::Inserted)
    }

    /// Removes a face; returns whether it was present.
    ///
    /// The last row moves into the freed row (swap-remove).
    pub fn remove(&mut self, token: &str) -> bool {
        let Some(row) = self.index.remove(token) else {
            return false;
        };
        let last = self.tokens.len() - 1;
        if row != last {
            let d = self.dims;
            self.data.copy_within(last * d..(last + 1) * d, row * d);
            self.index.insert(self.tokens[last].clone(), row);
        }
        self.data.truncate(last * self.dims);
        self.tokens.swap_remove(row);
        self.names.swap_remove(row);
        // Give memory back after large deletions.
        if self.tokens.capacity() > 1024 && self.tokens.len() < self.tokens.capacity() / 4 {
            self.shrink_to_fit();
        }
        true
    }

    /// Releases spare capacity.
    pub fn shrink_to_fit(&mut self) {
        self.data.shrink_to_fit();
        self.tokens.shrink_to_fit();
        self.names.shrink_to_fit();
        self.index.shrink_to_fit();
    }

    /// Heap bytes held, as computed from capacities and string lengths
    /// (allocator overhead not included).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        // Tokens are shared (`Arc<str>`) between the row list and the index: counted once,
        // with their two reference counts.
        let strings: usize = self
            .tokens
            .iter()
            .map(|t| t.as_str().len() + 2 * size_of::<usize>())
            .sum::<usize>()
            + self.names.iter().map(|n| n.len()).sum::<usize>();
        self.data.capacity() * size_of::<f32>()
            + self.tokens.capacity() * size_of::<FaceToken>()
            + self.names.capacity() * size_of::<Box<str>>()
            + self.index.capacity() * (size_of::<(FaceToken, usize)>() + 1)
            + strings
    }

    /// Every face whose Euclidean distance to `query` is strictly below
    /// `threshold`, nearest first (ties by token), at most `top_k` of them.
    ///
    /// Exact brute force; runs on the rayon pool from
    /// [`PARALLEL_MIN_ROWS`] rows up. A threshold of +∞ returns every face.
    pub fn search(
        &self,
        query: &[f32],
        threshold: f32,
        top_k: Option<usize>,
    ) -> Result<Vec<Match>> {
        validate_vector("query", query, self.dims)?;
        if threshold.is_nan() {
            return Err(Error::InvalidThreshold { threshold });
        }
        if self.is_empty() || top_k == Some(0) || threshold <= 0.0 {
            return Ok(Vec::new());
        }
        // Compare squared distances against a bound one ulp above
        // threshold², then apply the exact `sqrt(d²) < threshold` test to the
        // few candidates, so rounding in threshold² can neither add nor drop
        // a face.
        let bound = (threshold * threshold).next_up();
        let mut hits = self.scan(query, bound);
        hits.retain(|&(_, d2)| d2.sqrt() < threshold);
        let cmp = |a: &(usize, f32), b: &(usize, f32)| -> Ordering {
            a.1.total_cmp(&b.1)
                .then_with(|| self.tokens[a.0].cmp(&self.tokens[b.0]))
        };
        if let Some(k) = top_k
            && hits.len() > k
        {
            hits.select_nth_unstable_by(k - 1, cmp);
            hits.truncate(k);
        }
        hits.sort_unstable_by(cmp);
        Ok(hits
            .into_iter()
            .map(|(row, d2)| Match {
                token: self.tokens[row].clone(),
                name: self.names[row].to_string(),
                distance: d2.sqrt(),
            })
            .collect())
    }

    /// (row, squared distance) of every row with squared distance ≤ `bound`.
    fn scan(&self, query: &[f32], bound: f32) -> Vec<(usize, f32)> {
        let dims = self.dims;
        if dims == 0 {
            return (0..self.len()).map(|r| (r, 0.0)).collect();
        }
        if self.len() < PARALLEL_MIN_ROWS || rayon::current_num_threads() < 2 {
            let mut out = Vec::new();
            scan_rows(&self.data, dims, query, bound, 0, &mut out);
            return out;
        }
        self.data
            .par_chunks(CHUNK_ROWS * dims)
            .enumerate()
            .fold(Vec::new, |mut out, (i, chunk)| {
                scan_rows(chunk, dims, query, bound, i * CHUNK_ROWS, &mut out);
                out
            })
            .reduce(Vec::new, |mut a, mut b| {
                if a.len() < b.len() {
                    std::mem::swap(&mut a, &mut b);
                }
                a.extend_from_slice(&b);
                a
            })
    }
}

/// Squared Euclidean distance. Written so that LLVM vectorises it: 16
/// independent accumulators over `chunks_exact`, no early exit, one
/// horizontal sum at the end.
#[inline(always)]
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        tail += d * d;
    }
    // Pairwise horizontal sum.
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            acc[i] += acc[i + w];
        }
        w /= 2;
    }
    acc[0] + tail
}

fn scan_rows(
    data: &[f32],
    dims: usize,
    query: &[f32],
    bound: f32,
    base: usize,
    out: &mut Vec<(usize, f32)>,
) {
    // A compile-time row length lets LLVM unroll the kernel completely.
    match dims {
        128 => scan_fixed::<128>(data, query, bound, base, out),
        256 => scan_fixed::<256>(data, query, bound, base, out),
        512 => scan_fixed::<512>(data, query, bound, base, out),
        _ => {
            for (i, row) in data.chunks_exact(dims).enumerate() {
                let d2 = squared_distance(row, query);
                if d2 <= bound {
                    out.push((base + i, d2));
                }
            }
        }
    }
}

fn scan_fixed<const D: usize>(
    data: &[f32],
    query: &[f32],
    bound: f32,
    base: usize,
    out: &mut Vec<(usize, f32)>,
) {
    let q: &[f32; D] = match query.try_into() {
        Ok(q) => q,
        Err(_) => return,
    };
    for (i, row) in data.chunks_exact(D).enumerate() {
        let d2 = squared_distance(row, q);
        if d2 <= bound {
            out.push((base + i, d2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> FaceToken {
        FaceToken::parse(text).unwrap()
    }

    /// xorshift64*; deterministic test data.
    struct Rng(u64);
    impl Rng {
        fn next_f32(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
            (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
        fn vec(&mut self, d: usize) -> Vec<f32> {
            (0..d).map(|_| self.next_f32()).collect()
        }
    }

    fn naive(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn kernel_matches_naive_for_many_lengths() {
        let mut rng = Rng(7);
        for d in [0, 1, 3, 15, 16, 17, 31, 64, 100, 128, 129, 512] {
            let a = rng.vec(d);
            let b = rng.vec(d);
            let got = f64::from(squared_distance(&a, &b).sqrt());
            let want = naive(&a, &b);
            assert!(
                (got - want).abs() < 1e-5 * (1.0 + want),
                "d={d}: {got} vs {want}"
            );
        }
        // exact on a 3-4-5 triangle, including in the tail
        let mut a = vec![0.0f32; 19];
        a[2] = 3.0;
        a[18] = 4.0;
        assert_eq!(squared_distance(&a, &[0.0; 19]), 25.0);
    }

    #[test]
    fn exact_distances_order_threshold_and_top_k() {
        let mut m = FaceMatrix::new(3);
        m.upsert(&t("far"), "F", &[0.0, 0.0, 10.0]).unwrap();
        m.upsert(&t("five"), "E", &[3.0, 4.0, 0.0]).unwrap();
        m.upsert(&t("one"), "O", &[1.0, 0.0, 0.0]).unwrap();
        m.upsert(&t("two"), "T", &[0.0, -2.0, 0.0]).unwrap();
        m.upsert(&t("zero"), "Z", &[0.0, 0.0, 0.0]).unwrap();
        let q = [0.0, 0.0, 0.0];
        let hits = m.search(&q, 100.0, None).unwrap();
        let got: Vec<(&str, f32)> = hits
            .iter()
            .map(|h| (h.token.as_str(), h.distance))
            .collect();
        assert_eq!(
            got,
            [
                ("zero", 0.0),
                ("one", 1.0),
                ("two", 2.0),
                ("five", 5.0),
                ("far", 10.0)
            ]
        );
        assert_eq!(hits[1].name, "O");
        // strictly below: a face at exactly the threshold is not returned
        let at5 = m.search(&q, 5.0, None).unwrap();
        assert_eq!(
            at5.iter().map(|h| h.token.as_str()).collect::<Vec<_>>(),
            ["zero", "one", "two"]
        );
        let above5 = m.search(&q, 5.0f32.next_up(), None).unwrap();
        assert_eq!(above5.len(), 4);
        // top_k
        let top2 = m.search(&q, 100.0, Some(2)).unwrap();
        assert_eq!(
            top2.iter().map(|h| h.token.as_str()).collect::<Vec<_>>(),
            ["zero", "one"]
        );
        assert_eq!(m.search(&q, 100.0, Some(0)).unwrap(), []);
        assert_eq!(m.search(&q, 100.0, Some(99)).unwrap().len(), 5);
        assert_eq!(m.search(&q, 0.0, None).unwrap(), []);
        assert_eq!(m.search(&q, f32::INFINITY, None).unwrap().len(), 5);
        assert!(matches!(
            m.search(&q, f32::NAN, None),
            Err(Error::InvalidThreshold { .. })
        ));
        assert!(matches!(
            m.search(&[0.0; 2], 1.0, None),
            Err(Error::WrongDims {
                what: "query",
                got: 2,
                expected: 3
            })
        ));
    }

    #[test]
    fn ties_are_ordered_by_token() {
        let mut m = FaceMatrix::new(1);
        for tk in ["c", "a", "b"] {
            m.upsert(&t(tk), "", &[1.0]).unwrap();
        }
        let hits = m.search(&[0.0], 2.0, None).unwrap();
        assert_eq!(
            hits.iter().map(|h| h.token.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let top1 = m.search(&[0.0], 2.0, Some(1)).unwrap();
        assert_eq!(top1[0].token, "a");
    }

    #[test]
    fn upsert_replaces_and_remove_swaps() {
        let mut m = FaceMatrix::new(2);
        assert_eq!(
            m.upsert(&t("a"), "A", &[1.0, 0.0]).unwrap(),
            Upsert::Inserted
        );
        assert_eq!(
            m.upsert(&t("b"), "B", &[2.0, 0.0]).unwrap(),
            Upsert::Inserted
        );
        assert_eq!(
            m.upsert(&t("c"), "C", &[3.0, 0.0]).unwrap(),
            Upsert::Inserted
        );
        assert_eq!(
            m.upsert(&t("a"), "A2", &[1.5, 0.0]).unwrap(),
            Upsert::Replaced
        );
        assert_eq!(m.len(), 3);
        assert_eq!(m.get("a"), Some(("A2", &[1.5f32, 0.0][..])));
        assert!(m.remove("a"));
        assert!(!m.remove("a"));
        assert_eq!(m.len(), 2);
        // "c" moved into row 0 and is still found under its own token
        assert_eq!(m.get("c"), Some(("C", &[3.0f32, 0.0][..])));
        assert_eq!(m.get("b"), Some(("B", &[2.0f32, 0.0][..])));
        let hits = m.search(&[0.0, 0.0], 10.0, None).unwrap();
        assert_eq!(
            hits.iter()
                .map(|h| (h.token.as_str(), h.distance))
                .collect::<Vec<_>>(),
            [("b", 2.0), ("c", 3.0)]
        );
        assert!(m.remove("c"));
        assert!(m.remove("b"));
        assert!(m.is_empty());
        assert_eq!(m.search(&[0.0, 0.0], 10.0, None).unwrap(), []);
        assert!(matches!(
            m.upsert(&t("x"), "", &[1.0]),
            Err(Error::WrongDims { .. })
        ));
        assert!(matches!(
            m.upsert(&t("x"), "", &[1.0, f32::INFINITY]),
            Err(Error::NonFinite { .. })
        ));
    }

    #[test]
    fn parallel_scan_equals_sequential_reference() {
        let d = 128;
        let n = PARALLEL_MIN_ROWS + 3 * CHUNK_ROWS + 17;
        let mut rng = Rng(42);
        let mut m = FaceMatrix::with_capacity(d, n);
        let mut rows = Vec::with_capacity(n);
        for i in 0..n {
            let v = rng.vec(d);
            m.upsert(&t(&format!("t{i:06}")), "", &v).unwrap();
            rows.push(v);
        }
        let q = rng.vec(d);
        // a threshold that catches roughly a few percent of rows
        let mut all: Vec<f64> = rows.iter().map(|r| naive(r, &q)).collect();
        all.sort_by(f64::total_cmp);
        let threshold = all[n / 30] as f32;
        let hits = m.search(&q, threshold, None).unwrap();
        let want: Vec<(String, f64)> = {
            let mut w: Vec<(String, f64)> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("t{i:06}"), naive(r, &q)))
                .filter(|(_, dist)| *dist < f64::from(threshold))
                .collect();
            w.sort_by(|a, b| a.1.total_cmp(&b.1));
            w
        };
        // allow one boundary face either way for f32 vs f64 rounding
        assert!((hits.len() as isize - want.len() as isize).abs() <= 1);
        assert!(hits.len() > 100);
        for (h, (t, dist)) in hits.iter().zip(&want).take(50) {
            assert_eq!(h.token.as_str(), t);
            assert!((f64::from(h.distance) - dist).abs() < 1e-5);
        }
        assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
        // top_k in parallel mode
        let top = m.search(&q, threshold, Some(10)).unwrap();
        assert_eq!(top, hits[..10]);
    }
}
