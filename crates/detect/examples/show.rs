//! Prints the detections for an image and writes an annotated copy (debug helper).
//!
//! `cargo run --release -p facerec-detect --example show -- IMAGE [OUT.png] [MIN_FACE]`
#![allow(clippy::unwrap_used, clippy::expect_used)]
use facerec_detect::{Detector, DetectorConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: show IMAGE [OUT.png] [MIN_FACE]");
    let out = args.next();
    let min_face: f32 = args
        .next()
        .map(|s| s.parse().expect("min face"))
        .unwrap_or(30.0);
    let config = DetectorConfig {
        min_face_size: min_face,
        ..Default::default()
    };
    let detector = Detector::from_dir(&facerec_fixtures::models_dir(), config).unwrap();
    let mut img = image::open(&path).unwrap().to_rgb8();
    let faces = detector.detect(&img).unwrap();
    println!(
        "{path}: {}x{}, {} face(s)",
        img.width(),
        img.height(),
        faces.len()
    );
    for f in &faces {
        println!("  score {:.4} box {:?}", f.score, f.bbox);
        println!("    landmarks {:?}", f.landmarks);
    }
    if let Some(out) = out {
        let red = image::Rgb([255, 0, 0]);
        for f in &faces {
            let b = f.bbox;
            for x in b.x1.max(0.0) as u32..(b.x2 as u32).min(img.width()) {
                for y in [b.y1, b.y2] {
                    if y >= 0.0 && (y as u32) < img.height() {
                        img.put_pixel(x, y as u32, red);
                    }
                }
            }
            for y in b.y1.max(0.0) as u32..(b.y2 as u32).min(img.height()) {
                for x in [b.x1, b.x2] {
                    if x >= 0.0 && (x as u32) < img.width() {
                        img.put_pixel(x as u32, y, red);
                    }
                }
            }
            let colours = [
                [0, 255, 0],
                [0, 0, 255],
                [255, 255, 0],
                [0, 255, 255],
                [255, 0, 255],
            ];
            for (p, c) in f.landmarks.iter().zip(colours) {
                for dx in -2i32..=2 {
                    for dy in -2i32..=2 {
                        let (x, y) = (p[0] as i32 + dx, p[1] as i32 + dy);
                        if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height()
                        {
                            img.put_pixel(x as u32, y as u32, image::Rgb(c));
                        }
                    }
                }
            }
        }
        img.save(&out).unwrap();
    }
}
