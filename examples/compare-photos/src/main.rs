//! Are two photos of the same person? The core library alone, no web layer.
//!
//! ```sh
//! cargo run --release -p compare-photos -- crates/fixtures/photos/obama.jpg crates/fixtures/photos/obama2.jpg
//! ```

use anyhow::{Context, Result, bail};
use facerec::{DecodeLimits, FaceEngine, decode_image, largest_face};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b] = &args[..] else {
        bail!(
            "usage: compare-photos PHOTO_A PHOTO_B  (models are read from ./models or $FACEREC_MODELS_DIR)"
        );
    };
    let models = std::env::var("FACEREC_MODELS_DIR").unwrap_or_else(|_| "models".into());
    let engine =
        FaceEngine::from_dir(&models).with_context(|| format!("loading models from {models}"))?;

    let mut embeddings = Vec::new();
    for path in [a, b] {
        let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        let faces = engine.analyze(&decode_image(&bytes, &DecodeLimits::default())?)?;
        let Some(main) = largest_face(&faces) else {
            bail!("no face found in {path}")
        };
        println!("{path}: {} face(s), using the largest", faces.len());
        embeddings.push(faces[main].embedding.clone());
    }
    let distance = embeddings[0].distance(&embeddings[1]);
    let threshold = engine.model().threshold;
    let verdict = if distance < threshold {
        "the same person"
    } else {
        "different people"
    };
    println!("distance {distance:.3} (threshold {threshold}): {verdict}");
    Ok(())
}
