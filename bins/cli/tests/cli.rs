//! The `facerec` binary end to end: real models, the committed photos, and a tiny LFW-style
//! folder built from them for `eval-lfw`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{facerec, scratch};
use facerec_fixtures as fx;
use serde_json::Value;

/// Runs `facerec` expecting success and JSON on stdout.
fn facerec_json(args: &[&str]) -> Value {
    let out = facerec(args);
    assert!(
        out.status.success(),
        "facerec {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn photo(name: &str) -> String {
    fx::photo(name).display().to_string()
}

#[test]
fn detect_reports_the_face_and_draws_it() {
    let dir = scratch("detect");
    let drawn = dir.join("drawn.png");
    let v = facerec_json(&[
        "detect",
        &photo("obama.jpg"),
        "--json",
        "--draw",
        drawn.to_str().unwrap(),
    ]);
    let (w, h) = (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap());
    let faces = v["faces"].as_array().unwrap();
    assert_eq!(v["face_num"].as_u64().unwrap() as usize, faces.len());
    let best = &faces[0];
    assert!(best["score"].as_f64().unwrap() > 0.95, "{best}");
    let (x1, y1) = (
        best["top_left"][0].as_f64().unwrap(),
        best["top_left"][1].as_f64().unwrap(),
    );
    let (x2, y2) = (
        best["bottom_right"][0].as_f64().unwrap(),
        best["bottom_right"][1].as_f64().unwrap(),
    );
    for p in best["landmarks"].as_array().unwrap() {
        let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
        assert!(
            x > x1 && x < x2 && y > y1 && y < y2,
            "landmark {p} outside the box"
        );
    }
    let image = image::open(&drawn).expect("the drawn PNG").to_rgb8();
    assert_eq!(
        (u64::from(image.width()), u64::from(image.height())),
        (w, h)
    );
    let original = image::open(fx::photo("obama.jpg")).unwrap().to_rgb8();
    assert_ne!(image, original, "nothing was drawn");
}

#[test]
fn detect_timings_split_the_time_by_stage_and_level() {
    let v = facerec_json(&[
        "detect",
        &photo("group-sample1.jpg"),
        "--json",
        "--timings",
        "--runs",
        "2",
    ]);
    let t = &v["timings"];
    assert_eq!(t["runs"], 2, "{t}");
    assert_eq!(t["faces"], v["face_num"], "{t}");
    let ms = |key: &str| t[key].as_f64().unwrap();
    for key in ["detect_ms", "pnet_ms", "rnet_ms", "onet_ms", "embed_ms"] {
        assert!(ms(key) > 0.0, "{key}: {t}");
    }
    assert!(ms("pnet_ms") + ms("rnet_ms") + ms("onet_ms") <= ms("detect_ms") * 1.01 + 0.01);
    // The 1920x1280 photo's pyramid at 30 px: 768x512 first, each level 0.709 of the last.
    let levels = t["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 11, "{t}");
    assert_eq!(
        (levels[0]["width"].as_u64(), levels[0]["height"].as_u64()),
        (Some(768), Some(512))
    );
    for l in levels {
        assert!(l["pnet_ms"].as_f64().unwrap() > 0.0, "{l}");
        assert!(
            l["kept"].as_u64().unwrap() <= l["cells"].as_u64().unwrap(),
            "{l}"
        );
    }
    let boxes = t["pnet_boxes"].as_u64().unwrap();
    assert!(
        boxes >= t["rnet_boxes"].as_u64().unwrap() && boxes > 0,
        "{t}"
    );

    let out = facerec(&["detect", &photo("obama.jpg"), "--timings", "--runs", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "timings: mean of 1 runs",
        "P-Net",
        "R-Net",
        "O-Net",
        "level  size",
        "embed 2 face(s)",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

#[test]
fn compare_gives_the_verdict_at_the_model_threshold() {
    let same = facerec_json(&[
        "compare",
        &photo("obama.jpg"),
        &photo("obama2.jpg"),
        "--json",
    ]);
    assert_eq!(same["same_person"], true, "{same}");
    assert!(same["distance"].as_f64().unwrap() < same["threshold"].as_f64().unwrap());
    let different = facerec_json(&[
        "compare",
        &photo("obama.jpg"),
        &photo("biden.jpg"),
        "--json",
    ]);
    assert_eq!(different["same_person"], false, "{different}");
    assert!((different["threshold"].as_f64().unwrap() - 0.6).abs() < 1e-6);

    let text = facerec(&["compare", &photo("obama.jpg"), &photo("biden.jpg")]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("different people"));
}

#[test]
fn bad_inputs_fail_with_a_message_not_a_panic() {
    let dir = scratch("bad");
    let gif = dir.join("not-a-photo.jpg");
    std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    let out = facerec(&["detect", gif.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not-a-photo.jpg") && !err.contains("panicked"),
        "{err}"
    );

    let nobody = dir.join("gradient.png");
    std::fs::write(&nobody, fx::encode_png(&fx::gradient(200, 150))).unwrap();
    let out = facerec(&["compare", &photo("obama.jpg"), nobody.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no face found") && err.contains("gradient.png"),
        "{err}"
    );

    let missing = dir.join("missing.jpg");
    let out = facerec(&["detect", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.jpg"));
}

/// `Name/Name_NNNN.jpg` under `root`, copied from a committed photo or written as PNG bytes
/// (the name says `.jpg` as in LFW; decoding goes by content).
fn lfw_image(root: &Path, name: &str, n: u32, bytes: &[u8]) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}_{n:04}.jpg")), bytes).unwrap();
}

fn eval_lfw(pairs: &Path, images: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["eval-lfw", "--pairs", pairs.to_str().unwrap()];
    args.extend(["--images", images.to_str().unwrap()]);
    args.extend(extra);
    facerec(&args)
}

#[test]
fn eval_lfw_runs_the_protocol_on_a_tiny_folder() {
    let root = scratch("lfw");
    let images = root.join("images");
    lfw_image(&images, "Barack_Obama", 1, &fx::photo_bytes("obama.jpg"));
    lfw_image(&images, "Barack_Obama", 2, &fx::photo_bytes("obama2.jpg"));
    lfw_image(&images, "Joe_Biden", 1, &fx::photo_bytes("biden.jpg"));
    lfw_image(
        &images,
        "Nobody",
        1,
        &fx::encode_png(&fx::gradient(250, 250)),
    );
    // Two folds of one matched and one mismatched pair each.
    let pairs = root.join("pairs.txt");
    std::fs::write(
        &pairs,
        "2\t1\n\
         Barack_Obama\t1\t2\n\
         Barack_Obama\t1\tJoe_Biden\t1\n\
         Barack_Obama\t2\t1\n\
         Joe_Biden\t1\tNobody\t1\n",
    )
    .unwrap();
    let distances = root.join("distances.tsv");
    let out = eval_lfw(
        &pairs,
        &images,
        &["--json", "--distances", distances.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["model"], "dlib_face_recognition_resnet_model_v1");
    assert_eq!(v["dims"], 128);
    assert_eq!(v["pairs"], 4);
    assert_eq!(v["folds"], 2);
    assert_eq!(v["images"], 4);
    assert_eq!(v["no_face"], 1, "the gradient has no face");
    assert_eq!(v["no_face_images"][0], "Nobody/Nobody_0001.jpg");
    assert_eq!(v["accuracy_mean"].as_f64().unwrap(), 1.0, "{v}");
    for key in [
        "accuracy_std",
        "best_threshold",
        "tar_at_far_1e-2",
        "tar_at_far_1e-3",
        "ms_per_image",
    ] {
        assert!(v[key].is_number(), "{key} missing: {v}");
    }

    let tsv = std::fs::read_to_string(&distances).unwrap();
    let rows: Vec<Vec<&str>> = tsv
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 4, "{tsv}");
    for row in &rows {
        let (same, distance) = (row[1] == "1", row[2].parse::<f64>().unwrap());
        assert_eq!(same, distance < 0.6, "{row:?}");
    }
    assert_eq!(rows[0][3], "Barack_Obama/Barack_Obama_0001.jpg");

    let report = eval_lfw(&pairs, &images, &[]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        text.contains("accuracy") && text.contains("no face found: 1 of 4"),
        "{text}"
    );

    std::fs::write(&pairs, "2\t1\nBarack_Obama\t1\n").unwrap();
    let out = eval_lfw(&pairs, &images, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pairs.txt"), "{err}");
}
