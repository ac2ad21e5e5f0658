//! `facerec enroll`: a folder with one subfolder of photos per person, enrolled in a face set
//! through a server's batch endpoint (`POST /faceset/{set}/faces`) or straight into a data
//! dir, with a progress bar, a summary by outcome and by file, and a journal from which an
//! interrupted run resumes.
//!
//! The API derives an enrolled face's token from the face set and the photo's bytes, so
//! sending a file again replaces its record: a batch cut short can be sent again, and files
//! with the same bytes are one face (each content is sent once, the other files with it are
//! reported as its duplicates).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use facerec::{DecodeLimits, FaceEngine};
use facerec_api::ErrorCode;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod data_dir;
mod journal;
mod server;

use data_dir::{enroll_in_data_dir, open_data_dir};
use journal::{Journal, JournalLine};
use server::{Server, send_to_server};

/// Photo extensions enrolled, compared without case.
const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

const AFTER_HELP: &str = "\
Layout: DIR/<name>/*.jpg|jpeg|png (extensions in any case); the folder name is the face name. \
Other files (in DIR itself, in deeper folders, with other extensions) are not enrolled and \
are listed as ignored; names starting with a dot are skipped.

Each photo's largest face is enrolled; photos with several faces are counted as enrolled and \
listed. Files with the same bytes are one face: the first is sent, the others are listed as \
its duplicates.

Journal: one JSON line per finished file (sha256 of its bytes, its path in DIR, outcome, \
token), flushed after each batch; default DATA/enroll-SET.journal with --data-dir, \
DIR/.facerec-enroll-SET.journal with --server. --resume skips files whose content the \
journal holds as enrolled or as having no face (errors are tried again); without --resume \
the journal starts afresh.

Exit status: 0 when the run completed, whatever the photos held (see the summary); 1 when it \
could not (server unreachable or refusing the requests, data dir in use, journal not \
writable); 2 for bad arguments.";

/// Arguments of `enroll`.
#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct EnrollArgs {
    /// Folder of photos: DIR/<name>/*.jpg|jpeg|png, one subfolder per person.
    dir: PathBuf,
    /// Face set to enrol into (1-64 of A-Z a-z 0-9 _ -).
    #[arg(long, value_name = "SET", value_parser = parse_set_name)]
    face_set: String,
    /// Enrol through this server (http://HOST:PORT), with its batch endpoint.
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "data_dir",
        conflicts_with = "data_dir"
    )]
    server: Option<String>,
    /// API key, sent as `Authorization: Bearer KEY` (with --server).
    #[arg(
        long,
        value_name = "KEY",
        env = "FACEREC_API_KEY",
        hide_env_values = true
    )]
    key: Option<String>,
    /// Enrol straight into this data dir, without a server (none may be running on it).
    #[arg(long, value_name = "DATA")]
    data_dir: Option<PathBuf>,
    /// Photos per request (at most 16, the API's limit).
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=16))]
    batch: u16,
    /// Batches in flight at once, so that uploading and inference overlap.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=16))]
    parallel: u16,
    /// Skip the files whose content the journal holds as done (after an interrupted run).
    #[arg(long)]
    resume: bool,
    /// Journal file [default: DATA/enroll-SET.journal, or DIR/.facerec-enroll-SET.journal
    /// with --server].
    #[arg(long, value_name = "PATH")]
    journal: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar (there is none either when stderr is not a terminal).
    #[arg(long)]
    quiet: bool,
}

fn parse_set_name(text: &str) -> Result<String, String> {
    facerec_store::validate_set_name(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

/// Runs `enroll`; `engine` loads the models (only the data-dir mode needs them).
pub fn run(args: &EnrollArgs, engine: impl FnOnce() -> Result<FaceEngine>) -> Result<()> {
    let found = scan(&args.dir)?;
    let bar = progress_bar(args.quiet);
    let (summary, outcome) = if let Some(url) = &args.server {
        let server = Server::connect(url, args.key.clone(), bar.clone())?;
        let journal_path = args.journal.clone().unwrap_or_else(|| {
            args.dir
                .join(format!(".facerec-enroll-{}.journal", args.face_set))
        });
        let started = Instant::now();
        let (journal, plan) = prepare(args, &journal_path, found)?;
        let mut recorder = Recorder::new(args, "server", &journal_path, journal, &plan, bar);
        let outcome = send_to_server(&server, args, &plan, &mut recorder);
        recorder.finish(started, outcome)
    } else {
        let data_dir = args
            .data_dir
            .as_ref()
            .ok_or_else(|| anyhow!("give --server URL or --data-dir DATA"))?;
        let service = open_data_dir(data_dir, engine()?, args.parallel.into())?;
        let journal_path = args
            .journal
            .clone()
            .unwrap_or_else(|| data_dir.join(format!("enroll-{}.journal", args.face_set)));
        let started = Instant::now();
        let (journal, plan) = prepare(args, &journal_path, found)?;
        let mut recorder = Recorder::new(args, "data_dir", &journal_path, journal, &plan, bar);
        let outcome = enroll_in_data_dir(&service, args, &plan, &mut recorder);
        let flushed = service
            .flush()
            .with_context(|| format!("flushing the face store in {}", data_dir.display()));
        recorder.finish(started, outcome.and(flushed))
    };
    // a run that stopped part way still says what it did: on stdout with --json (with
    // "complete": false), else on stderr before the error
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if outcome.is_ok() {
        print!("{}", summary.report());
    } else {
        eprint!("{}", summary.report());
    }
    outcome
}

// ---- the folder -----------------------------------------------------------------------------

/// A photo of DIR to enrol.
#[derive(Debug, Clone)]
struct Photo {
    /// The face name (its folder's).
    name: String,
    /// Its path in DIR, with `/`: how the summary and the journal name it.
    file: String,
    path: PathBuf,
}

/// What a look at DIR found.
#[derive(Debug, Default)]
struct Found {
    photos: Vec<Photo>,
    /// Photos that cannot be enrolled as they are (with why), found before reading them.
    refused: Vec<(String, String)>,
    /// Paths in DIR of the files that are not photos of a person's folder.
    ignored: Vec<String>,
}

/// Lists DIR/<name>/*.jpg|jpeg|png in name order.
fn scan(dir: &Path) -> Result<Found> {
    let mut found = Found::default();
    for (entry, entry_name) in sorted_entries(dir)? {
        let path = entry.path();
        if !path.is_dir() {
            found.ignored.push(entry_name);
            continue;
        }
        let name = entry.file_name().to_str().map(str::to_owned);
        let bad_name = match &name {
            None => Some("the folder name is not UTF-8".to_owned()),
            Some(n) => facerec_store::validate_name(n)
                .err()
                .map(|e| format!("the folder name cannot be a face name: {e}")),
        };
        for (file, file_name) in sorted_entries(&path)? {
            let rel = format!("{entry_name}/{file_name}");
            let file_path = file.path();
            if file_path.is_dir() {
                found.ignored.push(format!("{rel}/"));
                continue;
            }
            let is_photo = Path::new(&file_name)
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)));
            if !is_photo {
                found.ignored.push(rel);
            } else if let Some(why) = &bad_name {
                found.refused.push((rel, why.clone()));
            } else {
                found.photos.push(Photo {
                    name: name.clone().unwrap_or_default(),
                    file: rel,
                    path: file_path,
                });
            }
        }
    }
    Ok(found)
}

/// The entries of a folder with their names (lossy for display), by name, without the
/// hidden ones (names starting with a dot, such as the journal).
fn sorted_entries(dir: &Path) -> Result<Vec<(std::fs::DirEntry, String)>> {
    let read = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            entries.push((entry, name));
        }
    }
    entries.sort_by_key(|e| e.0.file_name());
    Ok(entries)
}

/// One content to send: the first photo with these bytes, and the files with the same bytes.
#[derive(Debug)]
struct Upload {
    photo: Photo,
    sha256: String,
    duplicates: Vec<String>,
}

/// What this run does.
#[derive(Debug, Default)]
struct Plan {
    uploads: Vec<Upload>,
    /// Photos found.
    files: usize,
    /// Photos the journal holds as done.
    skipped: usize,
    /// Photos that cannot be sent, with why.
    refused: Vec<(String, String)>,
    ignored: Vec<String>,
}

impl Plan {
    /// Hashes the photos (on every core) and keeps those to send: not in `done`, each
    /// content once.
    fn new(found: Found, done: &HashMap<String, Outcome>) -> Self {
        let max_bytes = DecodeLimits::default().max_bytes as u64;
        let hashed: Vec<(Photo, Result<String, String>)> = found
            .photos
            .into_par_iter()
            .map(|photo| {
                let hash = hash_file(&photo.path, max_bytes);
                (photo, hash)
            })
            .collect();
        let mut plan = Plan {
            files: hashed.len() + found.refused.len(),
            refused: found.refused,
            ignored: found.ignored,
            ..Plan::default()
        };
        let mut first: HashMap<String, usize> = HashMap::new();
        for (photo, hash) in hashed {
            match hash {
                Err(why) => plan.refused.push((photo.file, why)),
                Ok(hash) if done.contains_key(&hash) => plan.skipped += 1,
                Ok(hash) => match first.get(&hash) {
                    Some(&i) => plan.uploads[i].duplicates.push(photo.file),
                    None => {
                        first.insert(hash.clone(), plan.uploads.len());
                        plan.uploads.push(Upload {
                            photo,
                            sha256: hash,
                            duplicates: Vec::new(),
                        });
                    }
                },
            }
        }
        plan
    }

    /// Photos this run finishes: all but the skipped.
    fn to_do(&self) -> usize {
        self.files - self.skipped
    }
}

/// SHA-256 of a file, hex; or why it cannot be sent (unreadable, larger than the API takes).
fn hash_file(path: &Path, max_bytes: u64) -> Result<String, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read it: {e}"))?
        .len();
    if len > max_bytes {
        return Err(format!(
            "{len} bytes: the API takes photos of at most {max_bytes} bytes"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The bytes of a batch's photos, or, for a photo that can no longer be read, its outcome.
fn read_batch(batch: &[Upload]) -> Vec<Result<Vec<u8>, Outcome>> {
    batch
        .iter()
        .map(|u| {
            std::fs::read(&u.photo.path).map_err(|e| Outcome::Error {
                error: format!("cannot read it: {e}"),
            })
        })
        .collect()
}

// ---- outcomes, journal, summary -------------------------------------------------------------

/// What became of a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Outcome {
    /// Its largest face was enrolled (`face_count` > 1: it had several).
    Enrolled { token: String, face_count: usize },
    /// No face in it.
    NoFace { detail: String },
    /// Not enrolled for another reason.
    Error { error: String },
    /// Same bytes as another file, which was sent instead.
    Duplicate { same_as: String },
}

impl Outcome {
    /// Whether a resumed run may skip a file with this content: what the API answered for it
    /// would not change.
    fn is_final(&self) -> bool {
        matches!(self, Self::Enrolled { .. } | Self::NoFace { .. })
    }

    /// An outcome from an error code and detail of the API about the photo sent as
    /// `file_name`.
    fn from_error(code: u16, message: &str, detail: &str, file_name: &str) -> Self {
        // the API names the photo first; the summary does already
        let detail = detail
            .strip_prefix(file_name)
            .and_then(|d| d.strip_prefix(": "))
            .unwrap_or(detail);
        if code == ErrorCode::FaceInfoError.code() {
            Self::NoFace {
                detail: detail.to_owned(),
            }
        } else {
            Self::Error {
                error: format!("{message} ({code}): {detail}"),
            }
        }
    }
}

/// Opens or creates the journal and plans the run.
fn prepare(args: &EnrollArgs, path: &Path, found: Found) -> Result<(Journal, Plan)> {
    if !args.resume {
        return Ok((Journal::create(path)?, Plan::new(found, &HashMap::new())));
    }
    let (journal, done, unreadable) = Journal::resume(path)?;
    if unreadable > 0 {
        eprintln!(
            "note: {unreadable} line(s) of the journal {} could not be read (a torn last line \
             of an interrupted run is normal); their files are sent again",
            path.display()
        );
    }
    Ok((journal, Plan::new(found, &done)))
}

/// A file with several faces.
#[derive(Debug, Serialize)]
struct SeveralFaces {
    file: String,
    face_count: usize,
}

/// A file that could not be enrolled.
#[derive(Debug, Serialize)]
struct FileError {
    file: String,
    error: String,
}

/// A file with the same bytes as another.
#[derive(Debug, Serialize)]
struct Duplicate {
    file: String,
    same_as: String,
}

/// The files of each notable outcome.
#[derive(Debug, Default, Serialize)]
struct ByFile {
    several_faces: Vec<SeveralFaces>,
    no_face: Vec<String>,
    errors: Vec<FileError>,
    duplicates: Vec<Duplicate>,
    ignored: Vec<String>,
}

/// What a run did (`--json` prints it as is).
#[derive(Debug, Default, Serialize)]
struct Summary {
    face_set: String,
    /// `server` or `data_dir`.
    mode: &'static str,
    journal: PathBuf,
    /// Photos found (DIR/<name>/*.jpg|jpeg|png).
    files: usize,
    /// Photos whose (largest) face was enrolled, those with several faces included.
    enrolled: usize,
    several_faces: usize,
    no_face: usize,
    errors: usize,
    duplicates: usize,
    /// Photos the journal held as done (`--resume`).
    skipped: usize,
    /// Other files in DIR.
    ignored: usize,
    /// Whether every photo was dealt with (false when the run failed part way).
    complete: bool,
    seconds: f64,
    /// Photos finished (not skipped) per second.
    files_per_second: f64,
    /// Faces enrolled per second.
    faces_per_second: f64,
    by_file: ByFile,
}

impl Summary {
    fn add(&mut self, file: &str, outcome: &Outcome) {
        let file = file.to_owned();
        match outcome {
            Outcome::Enrolled { face_count, .. } => {
                self.enrolled += 1;
                if *face_count > 1 {
                    self.several_faces += 1;
                    self.by_file.several_faces.push(SeveralFaces {
                        file,
                        face_count: *face_count,
                    });
                }
            }
            Outcome::NoFace { .. } => {
                self.no_face += 1;
                self.by_file.no_face.push(file);
            }
            Outcome::Error { error } => {
                self.errors += 1;
                self.by_file.errors.push(FileError {
                    file,
                    error: error.clone(),
                });
            }
            Outcome::Duplicate { same_as } => {
                self.duplicates += 1;
                self.by_file.duplicates.push(Duplicate {
                    file,
                    same_as: same_as.clone(),
                });
            }
        }
    }

    fn finished(&self) -> usize {
        self.enrolled + self.no_face + self.errors + self.duplicates
    }

    /// The summary for people.
    fn report(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "face set '{}': {} photo(s) in {:.1} s ({:.1} files/s, {:.1} faces/s){}",
            self.face_set,
            self.files,
            self.seconds,
            self.files_per_second,
            self.faces_per_second,
            if self.complete {
                ""
            } else {
                " - INCOMPLETE, run again with --resume"
            }
        );
        let rows = [
            ("enrolled", self.enrolled, ""),
            (
                "  several faces",
                self.several_faces,
                " (the largest was enrolled)",
            ),
            ("no face", self.no_face, ""),
            ("errors", self.errors, ""),
            (
                "duplicates",
                self.duplicates,
                " (same bytes as another file)",
            ),
            ("skipped", self.skipped, " (done by an earlier run)"),
            ("ignored", self.ignored, " (not DIR/<name>/*.jpg|jpeg|png)"),
        ];
        for (what, n, note) in rows {
            let _ = writeln!(s, "  {what:<16} {n:>7}{note}");
        }
        let b = &self.by_file;
        if !b.several_faces.is_empty() {
            let _ = writeln!(s, "several faces (the largest was enrolled):");
            for f in &b.several_faces {
                let _ = writeln!(s, "  {}: {} faces", f.file, f.face_count);
            }
        }
        if !b.no_face.is_empty() {
            let _ = writeln!(s, "no face:");
            for f in &b.no_face {
                let _ = writeln!(s, "  {f}");
            }
        }
        if !b.errors.is_empty() {
            let _ = writeln!(s, "errors:");
            for f in &b.errors {
                let _ = writeln!(s, "  {}: {}", f.file, f.error);
            }
        }
        if !b.duplicates.is_empty() {
            let _ = writeln!(s, "duplicates (enrolled once):");
            for f in &b.duplicates {
                let _ = writeln!(s, "  {} = {}", f.file, f.same_as);
            }
        }
        if !b.ignored.is_empty() {
            let _ = writeln!(s, "ignored:");
            for f in &b.ignored {
                let _ = writeln!(s, "  {f}");
            }
        }
        let _ = writeln!(s, "journal: {}", self.journal.display());
        s
    }
}

/// The progress bar on stderr: files done / to do, files/s, time left. Hidden with `--quiet`
/// or when stderr is not a terminal.
fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} files  {rate}  ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1} files/s", state.per_sec());
            },
        );
    bar.set_style(style);
    bar
}

/// Prints a line on stderr without garbling the progress bar.
fn note(bar: &ProgressBar, text: &str) {
    bar.suspend(|| eprintln!("{text}"));
}

/// Where finished batches go: the journal, the summary and the progress bar.
struct Recorder {
    journal: Journal,
    journal_path: PathBuf,
    summary: Summary,
    bar: ProgressBar,
}

impl Recorder {
    fn new(
        args: &EnrollArgs,
        mode: &'static str,
        journal_path: &Path,
        journal: Journal,
        plan: &Plan,
        bar: ProgressBar,
    ) -> Self {
        let mut summary = Summary {
            face_set: args.face_set.clone(),
            mode,
            journal: journal_path.to_owned(),
            files: plan.files,
            skipped: plan.skipped,
            ignored: plan.ignored.len(),
            ..Summary::default()
        };
        summary.by_file.ignored = plan.ignored.clone();
        for (file, error) in &plan.refused {
            summary.add(
                file,
                &Outcome::Error {
                    error: error.clone(),
                },
            );
        }
        if plan.skipped > 0 {
            note(
                &bar,
                &format!(
                    "skipping {} photo(s) the journal holds as done",
                    plan.skipped
                ),
            );
        }
        bar.set_length((plan.to_do() - plan.refused.len()) as u64);
        Self {
            journal,
            journal_path: journal_path.to_owned(),
            summary,
            bar,
        }
    }

    /// Records a finished batch: its files and their duplicates, in the summary and, durably,
    /// in the journal.
    fn record(&mut self, batch: &[Upload], outcomes: Vec<Outcome>) -> Result<()> {
        let mut lines = Vec::new();
        let mut files = 0;
        for (upload, outcome) in batch.iter().zip(outcomes) {
            self.summary.add(&upload.photo.file, &outcome);
            for dup in &upload.duplicates {
                let outcome = Outcome::Duplicate {
                    same_as: upload.photo.file.clone(),
                };
                self.summary.add(dup, &outcome);
                lines.push(JournalLine {
                    sha256: upload.sha256.clone(),
                    file: dup.clone(),
                    outcome,
                });
            }
            files += 1 + upload.duplicates.len();
            // the content's own line last: when it is there, so are its duplicates'
            lines.push(JournalLine {
                sha256: upload.sha256.clone(),
                file: upload.photo.file.clone(),
                outcome,
            });
        }
        self.journal
            .append(&lines)
            .with_context(|| format!("writing the journal {}", self.journal_path.display()))?;
        self.bar.inc(files as u64);
        Ok(())
    }

    /// The summary of the run, and its error (with what to do) when it stopped part way.
    fn finish(mut self, started: Instant, outcome: Result<()>) -> (Summary, Result<()>) {
        self.bar.finish_and_clear();
        let s = &mut self.summary;
        s.seconds = started.elapsed().as_secs_f64();
        let per_second = |n: usize| {
            if s.seconds > 0.0 {
                n as f64 / s.seconds
            } else {
                0.0
            }
        };
        s.files_per_second = per_second(s.finished());
        s.faces_per_second = per_second(s.enrolled);
        s.complete = outcome.is_ok();
        s.by_file.several_faces.sort_by(|a, b| a.file.cmp(&b.file));
        s.by_file.no_face.sort();
        s.by_file.errors.sort_by(|a, b| a.file.cmp(&b.file));
        s.by_file.duplicates.sort_by(|a, b| a.file.cmp(&b.file));
        let outcome = outcome.map_err(|e| {
            e.context(format!(
                "the run stopped after {} of {} photo(s); run the same command again with \
                 --resume to go on",
                s.finished() + s.skipped,
                s.files
            ))
        });
        (self.summary, outcome)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    pub(super) fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "facerec-cli-enroll-unit-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn scan_takes_person_folders_and_lists_the_rest() {
        let dir = scratch("scan");
        for (path, bytes) in [
            ("Ann/a.JPG", &b"1"[..]),
            ("Ann/b.jpeg", b"2"),
            ("Ann/notes.txt", b"3"),
            ("Ann/deeper/c.jpg", b"4"),
            ("Bob/c.Png", b"1"),
            ("top.jpg", b"5"),
            (".facerec-enroll-x.journal", b""),
            ("Bob/.hidden.jpg", b"6"),
        ] {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let found = scan(&dir).unwrap();
        let files: Vec<_> = found.photos.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(files, ["Ann/a.JPG", "Ann/b.jpeg", "Bob/c.Png"]);
        assert_eq!(found.photos[2].name, "Bob");
        assert_eq!(found.ignored, ["Ann/deeper/", "Ann/notes.txt", "top.jpg"]);

        // Bob/c.Png has Ann/a.JPG's bytes; Ann/b.jpeg is done already
        let done = HashMap::from([(
            hex(&Sha256::digest(b"2")),
            Outcome::NoFace { detail: "".into() },
        )]);
        let plan = Plan::new(found, &done);
        assert_eq!((plan.files, plan.skipped, plan.uploads.len()), (3, 1, 1));
        assert_eq!(plan.uploads[0].photo.file, "Ann/a.JPG");
        assert_eq!(plan.uploads[0].duplicates, ["Bob/c.Png"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
