//! The journal of `facerec enroll`: one JSON line per finished file, appended and made
//! durable after each batch, read back by `--resume`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Outcome;

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct JournalLine {
    pub(super) sha256: String,
    pub(super) file: String,
    #[serde(flatten)]
    pub(super) outcome: Outcome,
}

/// The append-only journal of finished files.
pub(super) struct Journal {
    file: File,
}

impl Journal {
    /// A new, empty journal.
    pub(super) fn create(path: &Path) -> Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("creating the journal {} (see --journal)", path.display()))?;
        Ok(Self { file })
    }

    /// Opens a journal to go on with and reads what it holds, by content; a torn last line
    /// (a run killed while writing it) is cut off, lines that cannot be read are passed over.
    pub(super) fn resume(path: &Path) -> Result<(Self, HashMap<String, Outcome>, usize)> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading the journal {}", path.display()));
            }
        };
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut done = HashMap::new();
        let mut unreadable = 0;
        for line in text[..complete].split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<JournalLine>(line) {
                Ok(entry) if entry.outcome.is_final() => {
                    done.insert(entry.sha256, entry.outcome);
                }
                Ok(_) => {}
                Err(_) => unreadable += 1,
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the journal {}", path.display()))?;
        if complete < text.len() {
            // appends go after the last complete line, not after the torn one
            file.set_len(complete as u64)
                .with_context(|| format!("cutting the torn last line of {}", path.display()))?;
            unreadable += 1;
        }
        Ok((Self { file }, done, unreadable))
    }

    /// Appends lines and makes them durable (once per batch).
    pub(super) fn append(&mut self, lines: &[JournalLine]) -> std::io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for line in lines {
            serde_json::to_writer(&mut text, line)?;
            text.push(b'\n');
        }
        self.file.write_all(&text)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::enroll::tests::scratch;

    fn line(sha: &str, file: &str, outcome: Outcome) -> JournalLine {
        JournalLine {
            sha256: sha.to_owned(),
            file: file.to_owned(),
            outcome,
        }
    }

    #[test]
    fn journal_resumes_final_outcomes_and_cuts_a_torn_line() {
        let dir = scratch("journal");
        let path = dir.join("j.journal");
        let mut journal = Journal::create(&path).unwrap();
        let enrolled = Outcome::Enrolled {
            token: "t1".into(),
            face_count: 2,
        };
        journal
            .append(&[
                line("aa", "A/1.jpg", enrolled.clone()),
                line("bb", "A/2.jpg", Outcome::NoFace { detail: "x".into() }),
                line("cc", "B/3.jpg", Outcome::Error { error: "y".into() }),
            ])
            .unwrap();
        drop(journal);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"sha256":"dd","file":"B/4.j"#).unwrap();
        drop(f);

        let (mut journal, done, unreadable) = Journal::resume(&path).unwrap();
        assert_eq!(unreadable, 1);
        assert_eq!(done.len(), 2, "errors are tried again: {done:?}");
        assert_eq!(done["aa"], enrolled);
        assert!(matches!(done["bb"], Outcome::NoFace { .. }));
        journal
            .append(&[line(
                "dd",
                "B/4.jpg",
                Outcome::NoFace { detail: "z".into() },
            )])
            .unwrap();
        drop(journal);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        for l in text.lines() {
            serde_json::from_str::<JournalLine>(l).unwrap();
        }
        let (_, done, unreadable) = Journal::resume(&path).unwrap();
        assert_eq!((done.len(), unreadable), (3, 0));
        std::fs::remove_dir_all(&dir).ok();
    }
}
