//! `facerec eval-ident`: open-set 1:N identification on an LFW-style folder.
//!
//! The gallery holds one image of each identity that has two or more (the first in name
//! order that shows a face); the other images of those identities are mated probes, and every
//! image of an identity with a single image is a non-mated probe (someone the gallery does not
//! know). Each probe is compared with the whole gallery (exact, brute force); the report is the
//! rank-1 identification rate and the false negative identification rate (FNIR) at given false
//! positive identification rates (FPIR), as [`AFTER_HELP`] spells out.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use facerec::{Embedding, FaceEngine};
use rayon::prelude::*;
use serde_json::json;

use crate::eval::{MainFace, map_with_progress, worker_pool};
use crate::lfw::threshold_at_rate;

/// Photo extensions read, compared without case.
const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The FPIR targets reported, with the suffix of their JSON fields.
const TARGETS: [(f64, &str); 2] = [(1e-2, "1e-2"), (1e-3, "1e-3")];

/// `eval-ident --help`, after the options: the protocol, the definitions and the JSON fields.
const AFTER_HELP: &str = "\
Layout: DIR/<identity>/*.jpg|jpeg|png (extensions in any case), or an LFW root whose images/ \
is laid out so (used when DIR/images holds folders). Names starting with a dot, files in DIR \
itself and deeper folders are skipped.

Protocol: the gallery holds one image of every identity with two or more images: the first in \
name order, or the next one when no face is found in it. Mated probes: the other images of \
those identities. Non-mated probes: the images of the identities with a single image. Each \
image gives its largest, most central face, embedded as eval-lfw does (--flip, --min-face); \
images without a face are counted, listed and left out. Each probe's nearest gallery entry is \
found by exact search in the model's distance (ties: the first identity in name order).

Figures: rank-1 = fraction of mated probes whose nearest entry is their own identity. For a \
threshold t: FPIR(t) = fraction of non-mated probes whose nearest distance is < t; FNIR(t) = \
fraction of mated probes whose nearest entry is not their identity or not < t. FNIR at \
FPIR = x uses the largest t with FPIR(t) <= x (ties at t stay out, so the FPIR reached may be \
lower than x). Without non-mated probes the FPIR figures are null and the report says why; \
the run still succeeds.

JSON (--json): one object with these fields.
  folder                  the identity folder read (DIR or DIR/images)
  identities              identity folders holding at least one image
  gallery_identities      identities with two or more images
  gallery                 gallery entries (identities with an image showing a face)
  mated_probes            mated probes showing a face
  non_mated_probes        non-mated probes showing a face
  images                  image files read
  no_face                 images without a face, left out
  no_face_images          their paths, relative to folder
  gallery_fallbacks       [{identity, skipped, gallery_image}]: identities whose first image
                          has no face, the images skipped, the one used (null: none had one)
  multiple_faces          images with more than one face
  rank1                   rank-1 identification rate, 0..1
  rank1_hits              mated probes whose nearest entry is their identity
  recommended_threshold   the model's recommended threshold
  fnir_at_recommended     FNIR at it
  fpir_at_recommended     FPIR at it (null without non-mated probes)
  threshold_at_fpir_1e-2  the largest t with FPIR(t) <= 1% (null without non-mated probes)
  fnir_at_fpir_1e-2       FNIR at that t
  fpir_reached_1e-2       FPIR at that t
  threshold_at_fpir_1e-3, fnir_at_fpir_1e-3, fpir_reached_1e-3: the same at 0.1%
  open_set_missing        null, or why the FPIR figures are null
  model                   the embedding model's id (--model)
  flip, min_face, threads the settings used
  wall_seconds            reading, detecting, embedding and searching (not loading models)
  search_seconds          the nearest-entry search alone
  images_per_second       images / wall_seconds

Exit status: 1 when DIR does not exist, no identity has two or more images, no mated probe \
shows a face, or an image cannot be read or decoded.";

/// Arguments of `eval-ident`.
#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct IdentArgs {
    /// Folder of photos, DIR/<identity>/*.jpg, or an LFW root holding images/.
    dir: PathBuf,
    /// One JSON object on stdout instead of the report (fields below).
    #[arg(long)]
    json: bool,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Also write every probe's nearest gallery entry to this file, one tab-separated line
    /// per probe (`probe mated nearest distance`), to look at the ones it gets wrong.
    #[arg(long, value_name = "FILE")]
    distances: Option<PathBuf>,
}

/// One identity folder: its name and its images (relative to the folder read), by name.
#[derive(Debug, Clone, PartialEq)]
struct Identity {
    name: String,
    images: Vec<PathBuf>,
}

/// Runs the benchmark on `args.dir`; the models are loaded (`engine`) once the folder has
/// been found to hold a gallery.
pub fn run(args: &IdentArgs, engine: impl FnOnce() -> Result<FaceEngine>) -> Result<()> {
    let root = identity_root(&args.dir)?;
    let identities = scan(&root)?;
    let images: Vec<(usize, &Path)> = identities
        .iter()
        .enumerate()
        .flat_map(|(i, id)| id.images.iter().map(move |p| (i, p.as_path())))
        .collect();
    if !identities.iter().any(|id| id.images.len() >= 2) {
        bail!(
            "{}: no identity has two or more images ({} identities, {} images): the gallery \
             takes one image of an identity and its probes the others",
            root.display(),
            identities.len(),
            images.len()
        );
    }
    let engine = engine()?;

    let pool = worker_pool(args.threads)?;
    let started = Instant::now();
    let found = map_with_progress(&pool, &images, |(_, rel)| {
        let path = root.join(rel);
        let face = MainFace::detect(&engine, &path)?;
        let embedding = match &face.landmarks {
            Some(landmarks) => Some(face.embed(&engine, landmarks, &path)?),
            None => None,
        };
        Ok::<_, anyhow::Error>((embedding, face.faces))
    });
    let mut per_identity: Vec<Vec<Option<Embedding>>> = vec![Vec::new(); identities.len()];
    let mut multiple = 0;
    for (&(i, rel), result) in images.iter().zip(found) {
        let (embedding, faces) = result.with_context(|| format!("image {}", rel.display()))?;
        multiple += usize::from(faces > 1);
        per_identity[i].push(embedding);
    }
    let split = split(&identities, &per_identity);
    let mated = split.probes.iter().filter(|p| p.mated).count();
    if mated == 0 {
        bail!(
            "{}: no mated probe: no identity has two or more images with a face ({} of {} \
             images without one)",
            root.display(),
            split.no_face.len(),
            images.len()
        );
    }

    let searched = Instant::now();
    let nearest: Vec<(usize, f32)> = pool.install(|| {
        split
            .probes
            .par_iter()
            .map(|p| nearest(&split.gallery, p.embedding))
            .collect()
    });
    let search = searched.elapsed();
    let wall = started.elapsed();

    if let Some(path) = &args.distances {
        let mut out = String::from("probe\tmated\tnearest\tdistance\n");
        for (p, &(g, d)) in split.probes.iter().zip(&nearest) {
            let nearest_name = &identities[split.gallery[g].identity].name;
            out.push_str(&format!(
                "{}\t{}\t{nearest_name}\t{d:.6}\n",
                p.image.display(),
                u8::from(p.mated),
            ));
        }
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
    }

    let mut mated_nearest = Vec::new();
    let mut non_mated_nearest = Vec::new();
    for (p, &(g, d)) in split.probes.iter().zip(&nearest) {
        if p.mated {
            mated_nearest.push((d, split.gallery[g].identity == p.identity));
        } else {
            non_mated_nearest.push(d);
        }
    }
    let scores = OpenSet::new(mated_nearest, non_mated_nearest);
    let report = Report {
        root: &root,
        identities: &identities,
        images: images.len(),
        split: &split,
        multiple,
        scores: &scores,
        model: &engine.model().id,
        recommended: engine.model().threshold,
        flip: engine.embedder().config().flip,
        min_face: engine.detector().config().min_face_size,
        threads: pool.current_num_threads(),
        wall: wall.as_secs_f64(),
        search: search.as_secs_f64(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

/// The folder whose subfolders are the identities: `dir`, or `dir/images` when that holds
/// folders (an LFW root).
fn identity_root(dir: &Path) -> Result<PathBuf> {
    if !dir.exists() {
        bail!("{}: no such folder", dir.display());
    }
    if !dir.is_dir() {
        bail!("{}: not a folder", dir.display());
    }
    let images = dir.join("images");
    if images.is_dir() && sorted_entries(&images)?.iter().any(|p| p.is_dir()) {
        return Ok(images);
    }
    Ok(dir.to_owned())
}

/// The paths in `dir`, by name, without the hidden ones (names starting with a dot).
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in read {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// The identities under `root` (`root/<identity>/*.jpg|jpeg|png`) by name, leaving out the
/// folders without an image.
fn scan(root: &Path) -> Result<Vec<Identity>> {
    let mut identities = Vec::new();
    for folder in sorted_entries(root)? {
        let Some(name) = folder.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if !folder.is_dir() {
            continue;
        }
        let images: Vec<PathBuf> = sorted_entries(&folder)?
            .into_iter()
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
            })
            .filter_map(|p| p.strip_prefix(root).ok().map(Path::to_path_buf))
            .collect();
        if !images.is_empty() {
            identities.push(Identity { name, images });
        }
    }
    Ok(identities)
}

/// One gallery entry: an identity (index in the scan) and its embedding.
struct GalleryEntry<'a> {
    identity: usize,
    embedding: &'a Embedding,
}

/// One probe: its image, its identity, and whether that identity is in the gallery.
struct Probe<'a> {
    image: &'a Path,
    identity: usize,
    mated: bool,
    embedding: &'a Embedding,
}

/// A gallery identity whose first image has no face: the images skipped, and the image
/// used instead (none when no image of it has a face).
#[derive(Debug, PartialEq)]
struct Fallback<'a> {
    identity: usize,
    skipped: Vec<&'a Path>,
    used: Option<&'a Path>,
}

/// The images split into gallery and probes, once faces are known.
struct Split<'a> {
    gallery: Vec<GalleryEntry<'a>>,
    probes: Vec<Probe<'a>>,
    fallbacks: Vec<Fallback<'a>>,
    no_face: Vec<&'a Path>,
}

/// Splits the images of `identities` given the embedding of each image's face
/// (`embeddings[i][j]` for `identities[i].images[j]`, `None` without a face).
fn split<'a>(identities: &'a [Identity], embeddings: &'a [Vec<Option<Embedding>>]) -> Split<'a> {
    let mut s = Split {
        gallery: Vec::new(),
        probes: Vec::new(),
        fallbacks: Vec::new(),
        no_face: Vec::new(),
    };
    for (identity, (id, found)) in identities.iter().zip(embeddings).enumerate() {
        let mated = id.images.len() >= 2;
        let mut gallery_image = None;
        let mut skipped = Vec::new();
        for (image, embedding) in id.images.iter().zip(found) {
            let Some(embedding) = embedding else {
                s.no_face.push(image);
                if mated && gallery_image.is_none() {
                    skipped.push(image.as_path());
                }
                continue;
            };
            if mated && gallery_image.is_none() {
                gallery_image = Some(image.as_path());
                s.gallery.push(GalleryEntry {
                    identity,
                    embedding,
                });
            } else {
                s.probes.push(Probe {
                    image,
                    identity,
                    mated,
                    embedding,
                });
            }
        }
        if !skipped.is_empty() {
            s.fallbacks.push(Fallback {
                identity,
                skipped,
                used: gallery_image,
            });
        }
    }
    s
}

/// The index of the gallery entry nearest to `probe` and its distance (ties: the first
/// entry). The gallery is not empty (a mated probe implies its identity's entry).
fn nearest(gallery: &[GalleryEntry], probe: &Embedding) -> (usize, f32) {
    gallery
        .iter()
        .enumerate()
        .map(|(i, g)| (i, g.embedding.distance(probe)))
        .fold(
            (0, f32::INFINITY),
            |best, (i, d)| {
                if d < best.1 { (i, d) } else { best }
            },
        )
}

/// Every probe's search result, and the identification figures they give.
#[derive(Debug, Clone, PartialEq)]
struct OpenSet {
    /// Of each mated probe: the distance to its nearest gallery entry, and whether that entry
    /// is its own identity.
    mated: Vec<(f32, bool)>,
    /// Of each non-mated probe: the distance to its nearest gallery entry, ascending.
    non_mated: Vec<f32>,
}

/// FNIR at the largest threshold whose FPIR is within a target.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OperatingPoint {
    threshold: f32,
    /// FPIR at `threshold`: at most the target.
    fpir: f64,
    fnir: f64,
}

impl OpenSet {
    fn new(mated: Vec<(f32, bool)>, mut non_mated: Vec<f32>) -> Self {
        non_mated.sort_by(f32::total_cmp);
        Self { mated, non_mated }
    }

    /// Mated probes whose nearest entry is their identity.
    fn rank1_hits(&self) -> usize {
        self.mated.iter().filter(|m| m.1).count()
    }

    /// The rank-1 identification rate; `None` without mated probes.
    fn rank1(&self) -> Option<f64> {
        (!self.mated.is_empty()).then(|| self.rank1_hits() as f64 / self.mated.len() as f64)
    }

    /// Non-mated probes nearer than `t` to some gallery entry (false alarms).
    fn false_alarms(&self, t: f32) -> usize {
        self.non_mated.partition_point(|&d| d < t)
    }

    /// FPIR(t); `None` without non-mated probes.
    fn fpir(&self, t: f32) -> Option<f64> {
        (!self.non_mated.is_empty())
            .then(|| self.false_alarms(t) as f64 / self.non_mated.len() as f64)
    }

    /// FNIR(t); `None` without mated probes.
    fn fnir(&self, t: f32) -> Option<f64> {
        let found = self.mated.iter().filter(|&&(d, own)| own && d < t).count();
        (!self.mated.is_empty()).then(|| 1.0 - found as f64 / self.mated.len() as f64)
    }

    /// The operating point at the largest threshold with FPIR <= `target`; `None` without
    /// non-mated or without mated probes.
    fn at_fpir(&self, target: f64) -> Option<OperatingPoint> {
        if self.non_mated.is_empty() {
            return None;
        }
        let threshold = threshold_at_rate(&self.non_mated, target);
        Some(OperatingPoint {
            threshold,
            fpir: self.fpir(threshold)?,
            fnir: self.fnir(threshold)?,
        })
    }
}

/// Everything the report prints.
struct Report<'a> {
    root: &'a Path,
    identities: &'a [Identity],
    images: usize,
    split: &'a Split<'a>,
    multiple: usize,
    scores: &'a OpenSet,
    model: &'a str,
    recommended: f32,
    flip: bool,
    min_face: f32,
    threads: usize,
    wall: f64,
    search: f64,
}

impl Report<'_> {
    fn gallery_identities(&self) -> usize {
        self.identities
            .iter()
            .filter(|i| i.images.len() >= 2)
            .count()
    }

    fn images_per_second(&self) -> f64 {
        self.images as f64 / self.wall.max(1e-9)
    }

    /// Why the FPIR figures are absent, if they are.
    fn open_set_missing(&self) -> Option<&'static str> {
        self.scores.non_mated.is_empty().then_some(
            "no non-mated probe (no identity with a single image showing a face): \
             FPIR and the thresholds it sets cannot be measured",
        )
    }

    fn fallbacks_json(&self) -> Vec<serde_json::Value> {
        self.split
            .fallbacks
            .iter()
            .map(|f| {
                json!({
                    "identity": self.identities[f.identity].name,
                    "skipped": f.skipped.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                    "gallery_image": f.used.map(|p| p.display().to_string()),
                })
            })
            .collect()
    }

    fn json(&self) -> serde_json::Value {
        let s = self.scores;
        let mated = s.mated.len();
        let mut out = json!({
            "folder": self.root.display().to_string(),
            "model": self.model,
            "identities": self.identities.len(),
            "gallery_identities": self.gallery_identities(),
            "gallery": self.split.gallery.len(),
            "mated_probes": mated,
            "non_mated_probes": s.non_mated.len(),
            "images": self.images,
            "no_face": self.split.no_face.len(),
            "no_face_images": self.split.no_face.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "gallery_fallbacks": self.fallbacks_json(),
            "multiple_faces": self.multiple,
            "rank1": s.rank1(),
            "rank1_hits": s.rank1_hits(),
            "recommended_threshold": self.recommended,
            "fnir_at_recommended": s.fnir(self.recommended),
            "fpir_at_recommended": s.fpir(self.recommended),
            "open_set_missing": self.open_set_missing(),
            "flip": self.flip,
            "min_face": self.min_face,
            "threads": self.threads,
            "wall_seconds": self.wall,
            "search_seconds": self.search,
            "images_per_second": self.images_per_second(),
        });
        for (target, suffix) in TARGETS {
            let point = s.at_fpir(target);
            out[format!("threshold_at_fpir_{suffix}")] = json!(point.map(|p| p.threshold));
            out[format!("fnir_at_fpir_{suffix}")] = json!(point.map(|p| p.fnir));
            out[format!("fpir_reached_{suffix}")] = json!(point.map(|p| p.fpir));
        }
        out
    }

    fn text(&self) -> String {
        use std::fmt::Write as _;
        let s = self.scores;
        let pct = |v: f64| v * 100.0;
        let list = |paths: &[&Path]| {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            names.join(", ")
        };
        let mut o = String::new();
        let _ = writeln!(
            o,
            "open-set identification on {} (model {}, min face {} px, flip {})",
            self.root.display(),
            self.model,
            self.min_face,
            self.flip
        );
        let _ = writeln!(
            o,
            "{} identities ({} with two or more images), {} images: gallery {}, mated probes {}, \
             non-mated probes {}",
            self.identities.len(),
            self.gallery_identities(),
            self.images,
            self.split.gallery.len(),
            s.mated.len(),
            s.non_mated.len()
        );
        let no_face = &self.split.no_face;
        let _ = writeln!(
            o,
            "no face found: {} of {} images ({:.2}%){}",
            no_face.len(),
            self.images,
            100.0 * no_face.len() as f64 / self.images.max(1) as f64,
            if no_face.is_empty() {
                String::new()
            } else {
                format!(", left out: {}", list(no_face))
            }
        );
        for f in &self.split.fallbacks {
            let name = &self.identities[f.identity].name;
            let _ = match f.used {
                Some(used) => writeln!(
                    o,
                    "gallery image of {name}: {} (no face in {})",
                    used.display(),
                    list(&f.skipped)
                ),
                None => writeln!(
                    o,
                    "{name} is not in the gallery: no face in any of its images"
                ),
            };
        }
        let _ = writeln!(
            o,
            "more than one face: {} images (the largest, most central one was used)",
            self.multiple
        );
        let _ = writeln!(
            o,
            "rank-1 identification rate: {:.2}% ({} of {} mated probes)",
            pct(s.rank1().unwrap_or(0.0)),
            s.rank1_hits(),
            s.mated.len()
        );
        match self.open_set_missing() {
            Some(why) => {
                let _ = writeln!(o, "FNIR at FPIR: not computed: {why}");
            }
            None => {
                for (target, _) in TARGETS {
                    if let Some(p) = s.at_fpir(target) {
                        let _ = writeln!(
                            o,
                            "FNIR at FPIR {}%: {:.2}% at threshold {:.4} (FPIR reached {:.2}%, \
                             {} of {} non-mated probes under it)",
                            pct(target),
                            pct(p.fnir),
                            p.threshold,
                            pct(p.fpir),
                            s.false_alarms(p.threshold),
                            s.non_mated.len()
                        );
                    }
                }
            }
        }
        let t = self.recommended;
        let _ = writeln!(
            o,
            "at the recommended threshold {t}: FNIR {:.2}%{}",
            pct(s.fnir(t).unwrap_or(0.0)),
            match s.fpir(t) {
                Some(f) => format!(", FPIR {:.2}%", pct(f)),
                None => String::new(),
            }
        );
        let _ = writeln!(
            o,
            "time: {:.1} s wall on {} threads, {:.1} images/s (search {:.2} s)",
            self.wall,
            self.threads,
            self.images_per_second(),
            self.search
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_set(mated: &[(f32, bool)], non_mated: &[f32]) -> OpenSet {
        OpenSet::new(mated.to_vec(), non_mated.to_vec())
    }

    #[test]
    fn rates_follow_the_definitions() {
        // One mated probe's nearest entry is someone else, however near.
        let s = open_set(
            &[(0.2, true), (0.4, true), (0.5, false), (0.7, true)],
            &[0.9, 0.3, 0.8, 0.6],
        );
        assert_eq!(s.non_mated, [0.3, 0.6, 0.8, 0.9], "sorted");
        assert_eq!(s.rank1(), Some(0.75));
        assert_eq!(s.rank1_hits(), 3);
        // Strictly below t: 0.6 itself is no false alarm at t = 0.6.
        assert_eq!(s.fpir(0.6), Some(0.25));
        assert_eq!(s.fpir(0.61), Some(0.5));
        assert_eq!(s.fpir(0.0), Some(0.0));
        assert_eq!(s.fpir(f32::INFINITY), Some(1.0));
        assert_eq!(
            s.fnir(0.6),
            Some(0.5),
            "0.7 too far, 0.5 the wrong identity"
        );
        assert_eq!(
            s.fnir(f32::INFINITY),
            Some(0.25),
            "only the wrong identity is left"
        );
        assert_eq!(s.fnir(0.2), Some(1.0));
    }

    #[test]
    fn the_threshold_is_the_largest_within_the_target() {
        let s = open_set(
            &[(0.2, true), (0.4, true), (0.5, false), (0.7, true)],
            &[0.3, 0.6, 0.8, 0.9],
        );
        // One false alarm in four allowed: up to 0.6 (excluded); anything above lets 0.6 in.
        let p = s.at_fpir(0.25).unwrap();
        assert_eq!(p.threshold, 0.6);
        assert_eq!((p.fpir, p.fnir), (0.25, 0.5));
        assert!(s.fpir(f32::from_bits(0.6_f32.to_bits() + 1)).unwrap() > 0.25);
        // Just under a quarter allows none: the smallest non-mated distance.
        let p = s.at_fpir(0.2499).unwrap();
        assert_eq!((p.threshold, p.fpir, p.fnir), (0.3, 0.0, 0.75));
        assert_eq!(s.at_fpir(0.01).unwrap().threshold, 0.3);
        // Everything allowed: no threshold at all, FNIR is the rank-1 miss rate.
        let p = s.at_fpir(1.0).unwrap();
        assert_eq!((p.threshold, p.fpir, p.fnir), (f32::INFINITY, 1.0, 0.25));
        assert_eq!(s.at_fpir(-0.5).unwrap().threshold, 0.3, "as 0");
    }

    #[test]
    fn ties_at_the_threshold_stay_out_together() {
        let s = open_set(&[(0.4, true), (0.5, true)], &[0.5, 0.5, 0.5, 0.9]);
        // Two of four allowed, but the three at 0.5 come in together: none can.
        let p = s.at_fpir(0.5).unwrap();
        assert_eq!((p.threshold, p.fpir, p.fnir), (0.5, 0.0, 0.5));
        let p = s.at_fpir(0.75).unwrap();
        assert_eq!((p.threshold, p.fpir, p.fnir), (0.9, 0.75, 0.0));
        // A mated probe tied with the threshold is not found either.
        assert_eq!(s.fnir(0.5), Some(0.5));
    }

    #[test]
    fn tiny_and_empty_sets() {
        // One non-mated probe: any target below 100% allows no false alarm.
        let s = open_set(&[(0.3, true)], &[0.7]);
        for target in [1e-3, 1e-2, 0.999] {
            let p = s.at_fpir(target).unwrap();
            assert_eq!((p.threshold, p.fpir, p.fnir), (0.7, 0.0, 0.0), "{target}");
        }
        let s = open_set(&[(0.3, true)], &[0.2]);
        assert_eq!(
            s.at_fpir(1e-2).unwrap().fnir,
            1.0,
            "0.3 is above the 0.2 threshold"
        );
        // No non-mated probe: no FPIR, no threshold; rank-1 and FNIR still stand.
        let s = open_set(&[(0.3, true), (0.1, false)], &[]);
        assert_eq!(s.at_fpir(1e-2), None);
        assert_eq!(s.fpir(0.6), None);
        assert_eq!((s.rank1(), s.fnir(0.6)), (Some(0.5), Some(0.5)));
        // No mated probe: nothing to identify.
        let s = open_set(&[], &[0.5]);
        assert_eq!((s.rank1(), s.fnir(0.6), s.at_fpir(0.5)), (None, None, None));
    }

    #[test]
    fn the_allowance_is_exact_where_the_product_rounds_down() {
        // 0.29 * 100 = 28.999999999999996 in f64, yet 29 / 100 <= 0.29.
        let non_mated: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let s = open_set(&[(0.1, true)], &non_mated);
        let p = s.at_fpir(0.29).unwrap();
        assert_eq!((p.threshold, p.fpir), (0.29, 0.29));
        // 1e-3 of 1340 (lfw-dev's singles) is 1.34: one false alarm.
        let non_mated: Vec<f32> = (0..1340).map(|i| 0.5 + i as f32 / 10_000.0).collect();
        let s = open_set(&[(0.1, true)], &non_mated);
        assert_eq!(s.at_fpir(1e-3).unwrap().threshold, non_mated[1]);
        assert_eq!(s.at_fpir(1e-2).unwrap().threshold, non_mated[13]);
    }

    fn identity(name: &str, files: &[&str]) -> Identity {
        Identity {
            name: name.to_owned(),
            images: files.iter().map(|f| Path::new(name).join(f)).collect(),
        }
    }

    #[test]
    fn split_takes_the_first_image_with_a_face_as_the_gallery() {
        let ids = [
            identity("Ann", &["1.jpg", "2.jpg", "3.jpg", "4.jpg"]),
            identity("Bob", &["1.jpg"]),
            identity("Cy", &["1.jpg", "2.jpg"]),
            identity("Dee", &["1.jpg", "2.jpg"]),
            identity("Eve", &["1.jpg"]),
        ];
        let e = |v: f32| Some(Embedding::new(vec![v]));
        let found = vec![
            vec![None, e(1.0), None, e(1.1)],
            vec![e(2.0)],
            vec![None, None],
            vec![e(4.0), e(4.1)],
            vec![None],
        ];
        let s = split(&ids, &found);
        let gallery: Vec<(usize, f32)> = s
            .gallery
            .iter()
            .map(|g| (g.identity, g.embedding.as_slice()[0]))
            .collect();
        assert_eq!(gallery, [(0, 1.0), (3, 4.0)]);
        let probes: Vec<(String, bool)> = s
            .probes
            .iter()
            .map(|p| (p.image.display().to_string(), p.mated))
            .collect();
        assert_eq!(
            probes,
            [
                ("Ann/4.jpg".to_owned(), true),
                ("Bob/1.jpg".to_owned(), false),
                ("Dee/2.jpg".to_owned(), true)
            ]
        );
        let no_face: Vec<String> = s.no_face.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            no_face,
            [
                "Ann/1.jpg",
                "Ann/3.jpg",
                "Cy/1.jpg",
                "Cy/2.jpg",
                "Eve/1.jpg"
            ]
        );
        assert_eq!(
            s.fallbacks,
            [
                Fallback {
                    identity: 0,
                    skipped: vec![Path::new("Ann/1.jpg")],
                    used: Some(Path::new("Ann/2.jpg")),
                },
                Fallback {
                    identity: 2,
                    skipped: vec![Path::new("Cy/1.jpg"), Path::new("Cy/2.jpg")],
                    used: None,
                },
            ]
        );
        let probe = Embedding::new(vec![3.9]);
        let (g, d) = nearest(&s.gallery, &probe);
        assert_eq!(s.gallery[g].identity, 3);
        assert!((d - 0.1).abs() < 1e-6);
        // Equidistant: the first entry wins.
        assert_eq!(nearest(&s.gallery, &Embedding::new(vec![2.5])).0, 0);
    }

    #[test]
    fn the_report_documents_its_fields_and_says_its_numbers() {
        let ids = [
            identity("Ann", &["1.jpg", "2.jpg", "3.jpg"]),
            identity("Bob", &["1.jpg", "2.jpg"]),
            identity("Cy", &["1.jpg"]),
            identity("Dee", &["1.jpg"]),
        ];
        let e = |v: f32| Some(Embedding::new(vec![v, 0.0]));
        let found = vec![
            vec![None, e(0.0), e(0.3)],
            vec![e(1.0), e(0.45)],
            vec![e(0.7)],
            vec![e(2.0)],
        ];
        let split = split(&ids, &found);
        let scores = OpenSet::new(
            split
                .probes
                .iter()
                .filter(|p| p.mated)
                .map(|p| {
                    let (g, d) = nearest(&split.gallery, p.embedding);
                    (d, split.gallery[g].identity == p.identity)
                })
                .collect(),
            split
                .probes
                .iter()
                .filter(|p| !p.mated)
                .map(|p| nearest(&split.gallery, p.embedding).1)
                .collect(),
        );
        // Ann's probe at 0.3 is found; Bob's at 0.45 is nearer Ann (0.45 < 0.55): a miss.
        // Cy is 0.3 from Bob, Dee 1.0 from Bob.
        assert_eq!(scores.rank1(), Some(0.5));
        let report = Report {
            root: Path::new("/data/images"),
            identities: &ids,
            images: 7,
            split: &split,
            multiple: 1,
            scores: &scores,
            model: "dlib_face_recognition_resnet_model_v1",
            recommended: 0.6,
            flip: true,
            min_face: 30.0,
            threads: 2,
            wall: 2.0,
            search: 0.5,
        };
        let v = report.json();
        for key in v.as_object().unwrap().keys() {
            assert!(
                AFTER_HELP.contains(key.as_str()),
                "{key} is not in the help"
            );
        }
        assert_eq!(v["identities"], 4);
        assert_eq!(v["gallery_identities"], 2);
        assert_eq!(
            (&v["mated_probes"], &v["non_mated_probes"]),
            (&2.into(), &2.into())
        );
        assert_eq!(v["no_face_images"], serde_json::json!(["Ann/1.jpg"]));
        assert_eq!(v["gallery_fallbacks"][0]["gallery_image"], "Ann/2.jpg");
        assert_eq!(v["images_per_second"], 3.5);
        // 1% of two allows no false alarm: the threshold is Cy's 0.3, which Ann's 0.3 is not
        // under either.
        let t = v["threshold_at_fpir_1e-2"].as_f64().unwrap();
        assert!((t - 0.3).abs() < 1e-6, "{t}");
        assert_eq!(v["fnir_at_fpir_1e-2"], 1.0);
        assert_eq!(v["fpir_at_recommended"], 0.5);
        assert_eq!(v["fnir_at_recommended"], 0.5);
        let text = report.text();
        for line in [
            "4 identities (2 with two or more images), 7 images: gallery 2, mated probes 2, \
             non-mated probes 2\n",
            "no face found: 1 of 7 images (14.29%), left out: Ann/1.jpg\n",
            "gallery image of Ann: Ann/2.jpg (no face in Ann/1.jpg)\n",
            "rank-1 identification rate: 50.00% (1 of 2 mated probes)\n",
            "FNIR at FPIR 1%: 100.00% at threshold 0.3000 (FPIR reached 0.00%, 0 of 2",
            "at the recommended threshold 0.6: FNIR 50.00%, FPIR 50.00%\n",
            "time: 2.0 s wall on 2 threads, 3.5 images/s (search 0.50 s)\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn scan_reads_identity_folders_and_finds_an_lfw_root() {
        let root = std::env::temp_dir().join(format!("facerec-ident-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let images = root.join("images");
        for file in [
            "Bob/b.JPG",
            "Bob/a.png",
            "Bob/notes.txt",
            "Bob/.hidden.jpg",
            "Bob/deeper/c.jpg",
            "Ann/x.jpeg",
            ".Hidden/y.jpg",
            "Empty/readme.md",
            "loose.jpg",
        ] {
            let path = images.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        std::fs::write(root.join("pairs.txt"), b"1 1\n").unwrap();
        assert_eq!(identity_root(&root).unwrap(), images);
        assert_eq!(identity_root(&images).unwrap(), images);
        assert_eq!(
            scan(&images).unwrap(),
            [
                identity("Ann", &["x.jpeg"]),
                identity("Bob", &["a.png", "b.JPG"])
            ]
        );
        let err = identity_root(&root.join("nope")).unwrap_err().to_string();
        assert!(err.contains("nope: no such folder"), "{err}");
        let err = identity_root(&root.join("pairs.txt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a folder"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
