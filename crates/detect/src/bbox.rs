//! Axis-aligned boxes, non-maximum suppression and the small box transforms MTCNN
//! applies between stages (regression, squaring).

/// An axis-aligned box in image pixel coordinates, `x` to the right and `y` down.
///
/// `(x1, y1)` is the top-left and `(x2, y2)` the bottom-right corner; the box is
/// non-empty when `x2 > x1` and `y2 > y1`. The geometric helpers ([`width`](Self::width),
/// [`area`](Self::area), [`iou`](Self::iou)) treat the box as a continuous rectangle; the
/// MTCNN-specific [`nms`] uses the inclusive-pixel (`+ 1`) convention of the reference
/// implementation instead.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct BoundingBox {
    /// Left edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
}

impl BoundingBox {
    /// Builds a box from its corners.
    pub const fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    /// `x2 - x1` (may be negative for a degenerate box).
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }

    /// `y2 - y1` (may be negative for a degenerate box).
    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }

    /// Width times height, `0` for a degenerate box.
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    /// The centre point `[x, y]`.
    pub fn center(&self) -> [f32; 2] {
        [(self.x1 + self.x2) * 0.5, (self.y1 + self.y2) * 0.5]
    }

    /// Intersection over union of the two rectangles, in `[0, 1]`; `0` when either is empty.
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let iw = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let ih = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }

    /// Applies MTCNN box regression: each edge moves by `offset * size`, where the size is
    /// `x2 - x1` / `y2 - y1`, plus `extra` (`0` after P-Net, `1` after R-Net and O-Net in
    /// the reference implementation).
    pub(crate) fn regress(&self, reg: [f32; 4], extra: f32) -> Self {
        let w = self.width() + extra;
        let h = self.height() + extra;
        Self {
            x1: self.x1 + reg[0] * w,
            y1: self.y1 + reg[1] * h,
            x2: self.x2 + reg[2] * w,
            y2: self.y2 + reg[3] * h,
        }
    }

    /// Grows the shorter side so the box becomes a square around the same centre
    /// ("rerec" in the reference implementation).
    pub(crate) fn to_square(self) -> Self {
        let w = self.width();
        let h = self.height();
        let side = w.max(h);
        let x1 = self.x1 + w * 0.5 - side * 0.5;
        let y1 = self.y1 + h * 0.5 - side * 0.5;
        Self {
            x1,
            y1,
            x2: x1 + side,
            y2: y1 + side,
        }
    }

    /// Truncates every coordinate towards zero (numpy `fix`).
    pub(crate) fn truncated(self) -> Self {
        Self {
            x1: self.x1.trunc(),
            y1: self.y1.trunc(),
            x2: self.x2.trunc(),
            y2: self.y2.trunc(),
        }
    }
}

/// How [`nms`] measures the overlap of two boxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NmsMethod {
    /// Intersection over union.
    Union,
    /// Intersection over the smaller of the two areas (suppresses boxes nested in a
    /// better one even when their sizes differ a lot).
    Min,
}

/// Greedy non-maximum suppression.
///
/// Visits the boxes from the highest score down; each visited box is kept and every
/// remaining box whose overlap with it is **greater than** `threshold` is dropped.
/// Returns the indices of the kept boxes, highest score first (ties keep input order).
///
/// Areas and intersections use the inclusive-pixel convention of the reference MTCNN
/// (`(x2 - x1 + 1) * (y2 - y1 + 1)`), so results match it exactly for integer boxes.
/// Only the first `min(boxes.len(), scores.len())` entries are considered. Runs in
/// `O(n²)` for `n` boxes.
///
/// ```
/// use facerec_detect::{nms, BoundingBox, NmsMethod};
/// let boxes = [
///     BoundingBox::new(0.0, 0.0, 10.0, 10.0),
///     BoundingBox::new(1.0, 1.0, 11.0, 11.0), // overlaps the first a lot
///     BoundingBox::new(50.0, 50.0, 60.0, 60.0),
/// ];
/// let scores = [0.8, 0.9, 0.7];
/// assert_eq!(nms(&boxes, &scores, 0.5, NmsMethod::Union), vec![1, 2]);
/// ```
pub fn nms(boxes: &[BoundingBox], scores: &[f32], threshold: f32, method: NmsMethod) -> Vec<usize> {
    let n = boxes.len().min(scores.len());
    let mut order: Vec<usize> = (0..n).collect();
    // Stable sort, descending score; NaN scores sort last.
    order.sort_by(|&a, &b| {
        scores[b]
            .partial_cmp(&scores[a])
            .unwrap_or_else(|| scores[a].is_nan().cmp(&scores[b].is_nan()))
    });
    // The boxes in that order, one array per coordinate, so that a kept box is compared with
    // all later ones in a loop that vectorises. Comparing a box that is already suppressed
    // changes nothing: it only suppresses it again.
    let column = |f: fn(&BoundingBox) -> f32| order.iter().map(|&i| f(&boxes[i])).collect();
    let sorted = Sorted {
        x1: column(|b| b.x1),
        y1: column(|b| b.y1),
        x2: column(|b| b.x2),
        y2: column(|b| b.y2),
        area: column(|b| (b.x2 - b.x1 + 1.0) * (b.y2 - b.y1 + 1.0)),
    };
    let mut suppressed = vec![false; n];
    let mut keep = Vec::new();
    for pos in 0..n {
        if suppressed[pos] {
            continue;
        }
        keep.push(order[pos]);
        suppress(&sorted, pos, threshold, method, &mut suppressed);
    }
    keep
}

/// Boxes as one array per coordinate, and their areas.
struct Sorted {
    x1: Vec<f32>,
    y1: Vec<f32>,
    x2: Vec<f32>,
    y2: Vec<f32>,
    area: Vec<f32>,
}

avx2_or_baseline! {
    /// Marks in `suppressed` every box after `pos` whose overlap with box `pos` is above
    /// `threshold` (or NaN).
    fn suppress / suppress_avx2(
        sorted: &Sorted,
        pos: usize,
        threshold: f32,
        method: NmsMethod,
        suppressed: &mut [bool],
    ) = suppress_with
}

/// [`suppress`] as compiled for the target's baseline.
#[inline(always)]
fn suppress_with(
    sorted: &Sorted,
    pos: usize,
    threshold: f32,
    method: NmsMethod,
    suppressed: &mut [bool],
) {
    let (x1, y1, x2, y2) = (
        sorted.x1[pos],
        sorted.y1[pos],
        sorted.x2[pos],
        sorted.y2[pos],
    );
    let area = sorted.area[pos];
    let rest = pos + 1..suppressed.len();
    let later = sorted.x1[rest.clone()]
        .iter()
        .zip(&sorted.y1[rest.clone()])
        .zip(&sorted.x2[rest.clone()])
        .zip(&sorted.y2[rest.clone()])
        .zip(&sorted.area[rest.clone()])
        .zip(&mut suppressed[rest]);
    for (((((&bx1, &by1), &bx2), &by2), &b_area), suppressed) in later {
        let w = (x2.min(bx2) - x1.max(bx1) + 1.0).max(0.0);
        let h = (y2.min(by2) - y1.max(by1) + 1.0).max(0.0);
        let inter = w * h;
        let overlap = match method {
            NmsMethod::Union => inter / (area + b_area - inter),
            NmsMethod::Min => inter / area.min(b_area),
        };
        // The reference keeps boxes with `overlap <= threshold`; a NaN overlap (from a
        // degenerate box) therefore suppresses, as in numpy.
        *suppressed |= overlap.is_nan() || overlap > threshold;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox::new(x1, y1, x2, y2)
    }

    #[test]
    fn geometry() {
        let a = b(0.0, 0.0, 10.0, 20.0);
        assert_eq!(a.width(), 10.0);
        assert_eq!(a.height(), 20.0);
        assert_eq!(a.area(), 200.0);
        assert_eq!(a.center(), [5.0, 10.0]);
        assert_eq!(a.iou(&a), 1.0);
        let c = b(5.0, 0.0, 15.0, 20.0);
        assert!((a.iou(&c) - 100.0 / 300.0).abs() < 1e-6);
        assert_eq!(a.iou(&b(20.0, 20.0, 30.0, 30.0)), 0.0);
        assert_eq!(b(5.0, 5.0, 1.0, 1.0).area(), 0.0);
        assert_eq!(b(5.0, 5.0, 1.0, 1.0).iou(&a), 0.0);
    }

    #[test]
    fn nms_union_keeps_best_of_overlapping() {
        let boxes = [
            b(0.0, 0.0, 9.0, 9.0),
            b(1.0, 1.0, 10.0, 10.0),
            b(20.0, 20.0, 29.0, 29.0),
        ];
        let scores = [0.5, 0.9, 0.7];
        // inter 9*9 = 81, union 100 + 100 - 81 = 119 -> 0.68
        assert_eq!(nms(&boxes, &scores, 0.5, NmsMethod::Union), vec![1, 2]);
        assert_eq!(nms(&boxes, &scores, 0.7, NmsMethod::Union), vec![1, 2, 0]);
    }

    #[test]
    fn nms_min_suppresses_nested_boxes() {
        let boxes = [b(0.0, 0.0, 99.0, 99.0), b(10.0, 10.0, 29.0, 29.0)];
        let scores = [0.9, 0.8];
        // Union: 400 / 10000 = 0.04 keeps both; Min: 400 / 400 = 1 drops the inner one.
        assert_eq!(nms(&boxes, &scores, 0.7, NmsMethod::Union), vec![0, 1]);
        assert_eq!(nms(&boxes, &scores, 0.7, NmsMethod::Min), vec![0]);
    }

    #[test]
    fn nms_threshold_is_exclusive_and_uses_inclusive_pixels() {
        // Two 10x10-pixel boxes (inclusive) sharing 5 columns: inter 50, union 150 -> 1/3.
        let boxes = [b(0.0, 0.0, 9.0, 9.0), b(5.0, 0.0, 14.0, 9.0)];
        let scores = [0.9, 0.8];
        assert_eq!(
            nms(&boxes, &scores, 1.0 / 3.0, NmsMethod::Union),
            vec![0, 1]
        );
        assert_eq!(nms(&boxes, &scores, 0.33, NmsMethod::Union), vec![0]);
    }

    #[test]
    fn nms_handles_empty_and_mismatched_input() {
        assert!(nms(&[], &[], 0.5, NmsMethod::Union).is_empty());
        assert_eq!(
            nms(&[b(0.0, 0.0, 1.0, 1.0)], &[0.3, 0.4], 0.5, NmsMethod::Min),
            vec![0]
        );
    }

    #[test]
    fn square_keeps_centre() {
        let sq = b(10.0, 20.0, 30.0, 60.0).to_square();
        assert_eq!(sq, b(0.0, 20.0, 40.0, 60.0));
        let sq = b(0.0, 0.0, 40.0, 10.0).to_square();
        assert_eq!(sq, b(0.0, -15.0, 40.0, 25.0));
        assert_eq!(sq.center(), [20.0, 5.0]);
    }

    #[test]
    fn regression_with_and_without_plus_one() {
        let base = b(10.0, 10.0, 29.0, 49.0); // w 19, h 39
        let r = [0.1, -0.1, 0.2, 0.5];
        let p = base.regress(r, 0.0);
        assert!((p.x1 - 11.9).abs() < 1e-5 && (p.y1 - 6.1).abs() < 1e-5);
        assert!((p.x2 - 32.8).abs() < 1e-5 && (p.y2 - 68.5).abs() < 1e-5);
        let q = base.regress(r, 1.0); // w 20, h 40
        assert!((q.x1 - 12.0).abs() < 1e-5 && (q.y1 - 6.0).abs() < 1e-5);
        assert!((q.x2 - 33.0).abs() < 1e-5 && (q.y2 - 69.0).abs() < 1e-5);
    }

    /// Greedy NMS as the reference writes it: each kept box against every later box not yet
    /// suppressed.
    fn nms_one_by_one(
        boxes: &[BoundingBox],
        scores: &[f32],
        threshold: f32,
        method: NmsMethod,
    ) -> Vec<usize> {
        let mut order: Vec<usize> = (0..boxes.len()).collect();
        order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap());
        let area = |b: &BoundingBox| (b.x2 - b.x1 + 1.0) * (b.y2 - b.y1 + 1.0);
        let mut suppressed = vec![false; boxes.len()];
        let mut keep = Vec::new();
        for (pos, &i) in order.iter().enumerate() {
            if suppressed[i] {
                continue;
            }
            keep.push(i);
            let bi = &boxes[i];
            for &j in &order[pos + 1..] {
                let bj = &boxes[j];
                if suppressed[j] {
                    continue;
                }
                let w = (bi.x2.min(bj.x2) - bi.x1.max(bj.x1) + 1.0).max(0.0);
                let h = (bi.y2.min(bj.y2) - bi.y1.max(bj.y1) + 1.0).max(0.0);
                let inter = w * h;
                let overlap = match method {
                    NmsMethod::Union => inter / (area(bi) + area(bj) - inter),
                    NmsMethod::Min => inter / area(bi).min(area(bj)),
                };
                if overlap.is_nan() || overlap > threshold {
                    suppressed[j] = true;
                }
            }
        }
        keep
    }

    #[test]
    fn nms_keeps_what_one_by_one_comparison_keeps() {
        let mut rng = facerec_fixtures::Rng(11);
        for round in 0..40 {
            let n = 1 + rng.below(300) as usize;
            // Boxes crowded into a small area, some of one pixel, as P-Net's cells are.
            let boxes: Vec<BoundingBox> = (0..n)
                .map(|_| {
                    let (x, y) = (rng.next_f32() * 200.0, rng.next_f32() * 150.0);
                    let (w, h) = (rng.next_f32() * 60.0, rng.next_f32() * 60.0);
                    b(x.floor(), y.floor(), (x + w).floor(), (y + h).floor())
                })
                .collect();
            let scores: Vec<f32> = (0..n).map(|_| rng.next_f32()).collect();
            for (threshold, method) in [
                (0.5, NmsMethod::Union),
                (0.7, NmsMethod::Union),
                (0.7, NmsMethod::Min),
            ] {
                let want = nms_one_by_one(&boxes, &scores, threshold, method);
                let got = nms(&boxes, &scores, threshold, method);
                assert!(want.len() > 1 || n < 5, "round {round}: too few kept");
                assert_eq!(
                    got, want,
                    "round {round}: {n} boxes, {method:?} {threshold}"
                );
            }
        }
    }

    #[test]
    fn truncation_is_towards_zero() {
        assert_eq!(b(-1.7, 1.7, -0.2, 2.9).truncated(), b(-1.0, 1.0, 0.0, 2.0));
    }
}
