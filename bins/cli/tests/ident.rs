//! `facerec eval-ident` end to end: the built binary with the real models on LFW-style
//! folders made of the committed photos, whose answers are known.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{facerec, scratch, write};
use facerec_fixtures as fx;
use serde_json::Value;

fn eval_ident(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["eval-ident", dir.to_str().unwrap()];
    args.extend(extra);
    facerec(&args)
}

/// Runs `eval-ident --json` expecting success.
fn eval_ident_json(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--json"];
    args.extend(extra);
    let out = eval_ident(dir, &args);
    assert!(
        out.status.success(),
        "eval-ident {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Runs `eval-ident` expecting exit status 1; returns stderr.
fn eval_ident_error(dir: &Path) -> String {
    let out = eval_ident(dir, &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A picture without a face (PNG bytes; decoding goes by content, whatever the name says).
fn no_face(width: u32) -> Vec<u8> {
    fx::encode_png(&fx::gradient(width, 250))
}

/// biden.jpg mirrored: a second, different photo of the same person.
fn biden_mirrored() -> Vec<u8> {
    let biden = image::open(fx::photo("biden.jpg")).unwrap().to_rgb8();
    fx::encode_jpeg(&image::imageops::flip_horizontal(&biden))
}

fn f64_of(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {v}"))
}

/// The probe rows of a `--distances` file: (probe, mated, nearest identity, distance).
fn probe_rows(path: &Path) -> Vec<(String, bool, String, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("probe\tmated\tnearest\tdistance"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{l}");
            (
                f[0].to_owned(),
                f[1] == "1",
                f[2].to_owned(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn identifies_the_mated_probes_of_a_tiny_gallery() {
    // An LFW root: pairs.txt beside images/<Name>/<Name>_NNNN.jpg.
    let root = scratch("known");
    let images = root.join("images");
    // Obama's first image has no face: the second becomes his gallery image.
    write(&images, "Barack_Obama/Barack_Obama_0001.jpg", &no_face(250));
    write(
        &images,
        "Barack_Obama/Barack_Obama_0002.jpg",
        &fx::photo_bytes("obama.jpg"),
    );
    write(
        &images,
        "Barack_Obama/Barack_Obama_0003.jpg",
        &fx::photo_bytes("obama2.jpg"),
    );
    write(
        &images,
        "Joe_Biden/Joe_Biden_0001.jpg",
        &fx::photo_bytes("biden.jpg"),
    );
    write(&images, "Joe_Biden/Joe_Biden_0002.jpg", &biden_mirrored());
    // Single-image identities: strangers (the non-mated probe) and one without a face.
    write(
        &images,
        "Group/Group_0001.jpg",
        &fx::photo_bytes("group-sample1.jpg"),
    );
    write(&images, "Nobody/Nobody_0001.jpg", &no_face(250));
    write(&images, "Joe_Biden/notes.txt", b"not a photo");
    write(&root, "pairs.txt", b"1\t1\n");

    let distances = root.join("probes.tsv");
    let v = eval_ident_json(&root, &["--distances", distances.to_str().unwrap()]);
    assert_eq!(v["folder"], images.display().to_string(), "{v}");
    assert_eq!(v["identities"], 4, "{v}");
    assert_eq!(v["gallery_identities"], 2, "{v}");
    assert_eq!(v["gallery"], 2, "{v}");
    assert_eq!(v["mated_probes"], 2, "{v}");
    assert_eq!(v["non_mated_probes"], 1, "{v}");
    assert_eq!(v["images"], 7, "{v}");
    assert_eq!(v["no_face"], 2, "{v}");
    assert_eq!(
        v["no_face_images"],
        serde_json::json!([
            "Barack_Obama/Barack_Obama_0001.jpg",
            "Nobody/Nobody_0001.jpg"
        ])
    );
    assert_eq!(
        v["gallery_fallbacks"],
        serde_json::json!([{
            "identity": "Barack_Obama",
            "skipped": ["Barack_Obama/Barack_Obama_0001.jpg"],
            "gallery_image": "Barack_Obama/Barack_Obama_0002.jpg",
        }])
    );
    // The detector finds two faces in obama.jpg (see `facerec detect`), three in the group.
    assert_eq!(v["multiple_faces"], 2, "{v}");
    assert_eq!(f64_of(&v, "rank1"), 1.0, "{v}");
    assert_eq!(v["rank1_hits"], 2, "{v}");
    assert!((f64_of(&v, "recommended_threshold") - 0.6).abs() < 1e-6);
    assert_eq!(v["open_set_missing"], Value::Null, "{v}");

    // The file holds every probe's nearest entry; the figures must follow from it.
    let rows = probe_rows(&distances);
    let probes: Vec<(&str, bool, &str)> = rows
        .iter()
        .map(|(p, m, n, _)| (p.as_str(), *m, n.as_str()))
        .collect();
    assert_eq!(
        probes,
        [
            ("Barack_Obama/Barack_Obama_0003.jpg", true, "Barack_Obama"),
            ("Group/Group_0001.jpg", false, rows[1].2.as_str()),
            ("Joe_Biden/Joe_Biden_0002.jpg", true, "Joe_Biden"),
        ]
    );
    let stranger = rows[1].3;
    let mated = [rows[0].3, rows[2].3];
    assert!(mated.iter().all(|&d| d < 0.6), "{rows:?}");
    assert_eq!(f64_of(&v, "fnir_at_recommended"), 0.0);
    assert_eq!(
        f64_of(&v, "fpir_at_recommended"),
        f64::from(u8::from(stranger < 0.6))
    );
    // One non-mated probe: no target below 100% allows its false alarm, so the threshold is
    // its distance (excluded) and the FNIR counts the mated probes at least that far.
    for x in ["1e-2", "1e-3"] {
        let t = f64_of(&v, &format!("threshold_at_fpir_{x}"));
        assert!((t - stranger).abs() < 1e-5, "{t} vs {stranger}");
        assert_eq!(f64_of(&v, &format!("fpir_reached_{x}")), 0.0);
        let missed = mated.iter().filter(|&&d| d >= t).count() as f64 / 2.0;
        assert_eq!(f64_of(&v, &format!("fnir_at_fpir_{x}")), missed, "{v}");
    }
    assert!(f64_of(&v, "images_per_second") > 0.0);
    assert!(f64_of(&v, "wall_seconds") >= f64_of(&v, "search_seconds"));

    // The images folder itself gives the same numbers; the report says them in words.
    let out = eval_ident(&images, &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "4 identities (2 with two or more images), 7 images: gallery 2, mated probes 2, \
         non-mated probes 1",
        "no face found: 2 of 7 images",
        "gallery image of Barack_Obama: Barack_Obama/Barack_Obama_0002.jpg (no face in \
         Barack_Obama/Barack_Obama_0001.jpg)",
        "rank-1 identification rate: 100.00% (2 of 2 mated probes)",
        "FNIR at FPIR 1%: ",
        "FNIR at FPIR 0.1%: ",
        "at the recommended threshold 0.6: FNIR 0.00%",
        "images/s",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn without_unknowns_reports_rank1_and_says_why_fpir_is_missing() {
    let dir = scratch("closed");
    write(&dir, "Obama/a.jpg", &fx::photo_bytes("obama.jpg"));
    write(&dir, "Obama/b.jpg", &fx::photo_bytes("obama2.jpg"));
    write(&dir, "Biden/a.jpg", &fx::photo_bytes("biden.jpg"));
    write(&dir, "Biden/b.jpg", &biden_mirrored());
    let v = eval_ident_json(&dir, &[]);
    assert_eq!(
        (&v["gallery"], &v["mated_probes"], &v["non_mated_probes"]),
        (&Value::from(2), &Value::from(2), &Value::from(0)),
        "{v}"
    );
    assert_eq!(f64_of(&v, "rank1"), 1.0, "{v}");
    assert_eq!(f64_of(&v, "fnir_at_recommended"), 0.0, "{v}");
    for key in [
        "fpir_at_recommended",
        "threshold_at_fpir_1e-2",
        "fnir_at_fpir_1e-2",
        "fpir_reached_1e-3",
    ] {
        assert_eq!(v[key], Value::Null, "{key}: {v}");
    }
    let why = v["open_set_missing"].as_str().unwrap();
    assert!(why.contains("no non-mated probe"), "{why}");

    let out = eval_ident(&dir, &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FNIR at FPIR: not computed: no non-mated probe"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn folders_without_a_gallery_fail_with_a_message() {
    let root = scratch("errors");
    let err = eval_ident_error(&root.join("missing"));
    assert!(err.contains("missing: no such folder"), "{err}");

    // Single images only: nothing to put in a gallery (found before loading any model).
    let singles = root.join("singles");
    write(&singles, "Obama/a.jpg", &fx::photo_bytes("obama.jpg"));
    write(&singles, "Biden/a.jpg", &fx::photo_bytes("biden.jpg"));
    write(&singles, "Biden/a.txt", b"not a photo");
    let err = eval_ident_error(&singles);
    assert!(
        err.contains("no identity has two or more images (2 identities, 2 images)"),
        "{err}"
    );

    // Two images, but a face in only one: a gallery entry and no mated probe.
    let faceless = root.join("faceless");
    write(&faceless, "Obama/a.jpg", &fx::photo_bytes("obama.jpg"));
    write(&faceless, "Obama/b.jpg", &no_face(300));
    write(&faceless, "Biden/a.jpg", &fx::photo_bytes("biden.jpg"));
    let err = eval_ident_error(&faceless);
    assert!(
        err.contains("no mated probe") && err.contains("1 of 3 images without one"),
        "{err}"
    );

    // An image that cannot be decoded is named.
    let broken = root.join("broken");
    write(&broken, "Obama/a.jpg", &fx::photo_bytes("obama.jpg"));
    write(
        &broken,
        "Obama/b.jpg",
        &fx::photo_bytes("obama2.jpg")[..2000],
    );
    let err = eval_ident_error(&broken);
    assert!(err.contains("Obama/b.jpg"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}
