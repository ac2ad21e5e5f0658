//! `facerec enroll --server`: batches sent to `POST /faceset/{set}/faces` as multipart
//! bodies, a few in flight, with the retries the API's answers call for.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use indicatif::ProgressBar;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{EnrollArgs, Outcome, Photo, Plan, Recorder, Upload, hex, note, read_batch};

/// A facerec server's batch endpoint.
pub(super) struct Server {
    agent: ureq::Agent,
    base: String,
    key: Option<String>,
    bar: ProgressBar,
}

/// An HTTP answer.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

/// The API's error body.
#[derive(Debug, Default, Deserialize)]
struct ErrorReply {
    error_code: Option<u16>,
    error_message: Option<String>,
    detail: Option<String>,
}

/// The answer to a batch.
#[derive(Debug, Deserialize)]
struct BatchReply {
    results: Vec<BatchItem>,
}

/// One photo's result in [`BatchReply`].
#[derive(Debug, Deserialize)]
struct BatchItem {
    index: usize,
    face_token: Option<String>,
    face_count: Option<usize>,
    error_code: Option<u16>,
    error_message: Option<String>,
    detail: Option<String>,
}

/// What to do after an answer that is not a 200.
#[derive(Debug, PartialEq)]
enum Retry {
    /// Wait this long and send the batch again.
    After(Duration),
    /// Give up.
    No,
}

/// Most retries of a batch answered 429 (too many requests).
const MAX_RATE_LIMITED: u32 = 30;
/// Most retries of a batch answered 502/503/504 or not answered at all.
const MAX_UNAVAILABLE: u32 = 5;
/// Longest wait honoured from `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Whether to send a batch again after `status` (`None`: no answer), on the `attempt`-th
/// failure of its kind (from 1): 429 after `Retry-After`, 502/503/504 and lost connections
/// with exponential backoff from 0.5 s (or `Retry-After`), a few times.
fn retry_policy(status: Option<u16>, retry_after: Option<Duration>, attempt: u32) -> Retry {
    let backoff = Duration::from_millis(500) * 2u32.saturating_pow(attempt.saturating_sub(1));
    match status {
        Some(429) if attempt <= MAX_RATE_LIMITED => Retry::After(
            retry_after
                .unwrap_or(Duration::from_secs(1))
                .min(MAX_RETRY_AFTER),
        ),
        Some(502..=504) if attempt <= MAX_UNAVAILABLE => {
            Retry::After(retry_after.unwrap_or(backoff).min(MAX_RETRY_AFTER))
        }
        None if attempt <= MAX_UNAVAILABLE => Retry::After(backoff),
        _ => Retry::No,
    }
}

impl Server {
    /// A client for the server at `url` (`http://HOST:PORT`, or `HOST:PORT`), once it
    /// answers `GET /health`.
    pub(super) fn connect(url: &str, key: Option<String>, bar: ProgressBar) -> Result<Self> {
        let base = url.trim_end_matches('/');
        let base = if base.starts_with("https://") {
            bail!(
                "{url}: this build of facerec speaks plain http only; reach the server over \
                 http (on its host, or through an SSH tunnel)"
            );
        } else if base.starts_with("http://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            // a batch of 16 large photos on a busy server
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        let server = Self {
            agent,
            base,
            key: key.filter(|k| !k.is_empty()),
            bar,
        };
        let health = server.agent.get(format!("{}/health", server.base)).call();
        if let Err(e) = health {
            bail!(
                "cannot reach the server at {}: {e} (is it running, and is the URL right?)",
                server.base
            );
        }
        Ok(server)
    }

    fn post(&self, url: &str, content_type: &str, body: &[u8]) -> Result<Answer, ureq::Error> {
        let mut req = self.agent.post(url).header("Content-Type", content_type);
        if let Some(key) = &self.key {
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        let mut res = req.send(body)?;
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = res.body_mut().with_config().limit(16 << 20).read_to_vec()?;
        Ok(Answer {
            status: res.status().as_u16(),
            retry_after,
            body,
        })
    }

    /// Enrols a batch; an error is one of the whole request (after the retries it allows).
    fn enroll(&self, set: &str, batch: &[Upload]) -> Result<Vec<Outcome>> {
        let read = read_batch(batch);
        let sent: Vec<usize> = (0..batch.len()).filter(|&i| read[i].is_ok()).collect();
        let mut outcomes: Vec<Option<Outcome>> =
            read.iter().map(|r| r.as_ref().err().cloned()).collect();
        if sent.is_empty() {
            return Ok(outcomes.into_iter().flatten().collect());
        }
        let boundary = boundary(batch);
        let parts: Vec<(&Photo, &[u8])> = sent
            .iter()
            .filter_map(|&i| Some((&batch[i].photo, read[i].as_deref().ok()?)))
            .collect();
        let body = multipart(&boundary, &parts);
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let url = format!("{}/faceset/{set}/faces", self.base);
        let (mut limited, mut unavailable) = (0, 0);
        let answer = loop {
            let (status, retry_after, why) = match self.post(&url, &content_type, &body) {
                Ok(a) if a.status == 200 => break a,
                Ok(a) => {
                    let why = describe(&a);
                    (Some(a.status), a.retry_after, why)
                }
                Err(e) => (None, None, format!("no answer: {e}")),
            };
            let attempt = if status == Some(429) {
                limited += 1;
                limited
            } else {
                unavailable += 1;
                unavailable
            };
            match retry_policy(status, retry_after, attempt) {
                Retry::After(wait) => {
                    note(
                        &self.bar,
                        &format!(
                            "{url}: {why}; sending the batch again in {:.1} s",
                            wait.as_secs_f64()
                        ),
                    );
                    std::thread::sleep(wait);
                }
                Retry::No => bail!("{}", refusal(&url, status, &why, parts.len(), body.len())),
            }
        };
        let reply: BatchReply = serde_json::from_slice(&answer.body).with_context(|| {
            format!(
                "{url} answered 200 with a body that is not a batch result: {}",
                snippet(&answer.body)
            )
        })?;
        for item in reply.results {
            let Some(&slot) = sent.get(item.index) else {
                bail!(
                    "{url} answered a result for photo {} of a batch of {}",
                    item.index,
                    sent.len()
                );
            };
            outcomes[slot] = Some(match (item.face_token, item.error_code) {
                (Some(token), None) => Outcome::Enrolled {
                    token,
                    face_count: item.face_count.unwrap_or(1),
                },
                (_, Some(code)) => Outcome::from_error(
                    code,
                    item.error_message.as_deref().unwrap_or("ERROR"),
                    item.detail.as_deref().unwrap_or(""),
                    file_name(&batch[slot].photo),
                ),
                (None, None) => Outcome::Error {
                    error: "the server answered neither a token nor an error".to_owned(),
                },
            });
        }
        outcomes
            .into_iter()
            .zip(batch)
            .map(|(o, u)| o.ok_or_else(|| anyhow!("{url} answered no result for {}", u.photo.file)))
            .collect()
    }
}

/// What a whole-request failure means for the user.
fn refusal(url: &str, status: Option<u16>, why: &str, photos: usize, bytes: usize) -> String {
    match status {
        None => format!("cannot reach the server: {url}: {why}"),
        Some(401) => format!(
            "the server needs a valid API key: {url}: {why}; give it with --key or \
             FACEREC_API_KEY"
        ),
        Some(403) => format!("the server does not let this API key enrol here: {url}: {why}"),
        Some(404 | 405) => format!(
            "the server has no batch enrolment at {url} ({why}): is it a facerec-server of \
             this version?"
        ),
        Some(413) => format!(
            "the server refused a batch of {photos} photo(s), {bytes} bytes, as too large \
             ({why}): use a smaller --batch"
        ),
        Some(429) => format!("the server kept answering 'too many requests': {url}: {why}"),
        Some(s) if s >= 500 => format!("the server failed: {url}: {why}"),
        Some(_) => format!("the server refused the batch: {url}: {why}"),
    }
}

/// `STATUS ERROR_MESSAGE (CODE): DETAIL` of an answer in the API's error shape, else its
/// status and the start of its body.
fn describe(answer: &Answer) -> String {
    let reply: ErrorReply = serde_json::from_slice(&answer.body).unwrap_or_default();
    match (reply.error_message, reply.error_code, reply.detail) {
        (Some(message), Some(code), Some(detail)) => {
            format!("{} {message} ({code}): {detail}", answer.status)
        }
        _ => format!("{} {}", answer.status, snippet(&answer.body)),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

/// A multipart boundary that does not occur in the batch's photos (as good as certain: 128
/// bits from their hashes, the process and the time).
fn boundary(batch: &[Upload]) -> String {
    let mut hash = Sha256::new();
    for u in batch {
        hash.update(u.sha256.as_bytes());
    }
    hash.update(std::process::id().to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hash.update(now.as_nanos().to_le_bytes());
    format!("facerec-enroll-{}", &hex(&hash.finalize())[..32])
}

/// The body of `POST /faceset/{set}/faces`: for each photo a text part `name` (its face
/// name), then the photo as a file part `image_file`.
fn multipart(boundary: &str, photos: &[(&Photo, &[u8])]) -> Vec<u8> {
    let size: usize = photos.iter().map(|(_, b)| b.len() + 400).sum();
    let mut body = Vec::with_capacity(size + 64);
    for (photo, bytes) in photos {
        let file_name = file_name(photo);
        let content_type = if file_name.to_ascii_lowercase().ends_with(".png") {
            "image/png"
        } else {
            "image/jpeg"
        };
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"image_file\"; \
                 filename=\"{}\"\r\nContent-Type: {content_type}\r\n\r\n",
                photo.name,
                quoted(file_name)
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// The name a photo is sent under: its file name, without its folder.
fn file_name(photo: &Photo) -> &str {
    photo.file.rsplit('/').next().unwrap_or(&photo.file)
}

/// A file name fit for a quoted header parameter (as browsers do it).
fn quoted(name: &str) -> String {
    name.replace('\\', "%5C")
        .replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Sends the plan's batches, `--parallel` at a time; stops at the first failure of a whole
/// request, once the batches in flight are back.
pub(super) fn send_to_server(
    server: &Server,
    args: &EnrollArgs,
    plan: &Plan,
    recorder: &mut Recorder,
) -> Result<()> {
    let batches: Vec<&[Upload]> = plan.uploads.chunks(usize::from(args.batch)).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..usize::from(args.parallel).min(batches.len()) {
            let tx = tx.clone();
            let (next, stop, batches) = (&next, &stop, &batches);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(batch) = batches.get(i) else { break };
                    let result = server.enroll(&args.face_set, batch);
                    let failed = result.is_err();
                    if tx.send((i, result)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut first_error = None;
        for (i, result) in rx {
            let recorded = result.and_then(|outcomes| recorder.record(batches[i], outcomes));
            if let Err(e) = recorded {
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::path::PathBuf;

    #[test]
    fn retries_follow_the_status() {
        let s = Duration::from_secs;
        assert_eq!(retry_policy(Some(429), Some(s(7)), 1), Retry::After(s(7)));
        assert_eq!(retry_policy(Some(429), None, 3), Retry::After(s(1)));
        assert_eq!(
            retry_policy(Some(429), Some(s(9999)), 1),
            Retry::After(s(120))
        );
        assert_eq!(
            retry_policy(Some(429), None, MAX_RATE_LIMITED + 1),
            Retry::No
        );
        assert_eq!(
            retry_policy(Some(503), None, 1),
            Retry::After(Duration::from_millis(500))
        );
        assert_eq!(retry_policy(Some(503), None, 3), Retry::After(s(2)));
        assert_eq!(retry_policy(Some(503), Some(s(1)), 2), Retry::After(s(1)));
        assert_eq!(
            retry_policy(Some(503), None, MAX_UNAVAILABLE + 1),
            Retry::No
        );
        assert_eq!(retry_policy(None, None, 2), Retry::After(s(1)));
        for status in [400, 401, 403, 404, 413, 500] {
            assert_eq!(
                retry_policy(Some(status), Some(s(1)), 1),
                Retry::No,
                "{status}"
            );
        }
    }

    #[test]
    fn multipart_pairs_each_name_with_its_photo() {
        let photo = |name: &str, file: &str| Photo {
            name: name.into(),
            file: file.into(),
            path: PathBuf::new(),
        };
        let (ann, bob) = (photo("Ann", "Ann/a \"1\".jpg"), photo("Bob", "Bob/b.PNG"));
        let body = multipart("XYZ", &[(&ann, b"JPEG"), (&bob, b"PNG")]);
        let text = String::from_utf8(body).unwrap();
        assert_eq!(
            text,
            "--XYZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nAnn\r\n\
             --XYZ\r\nContent-Disposition: form-data; name=\"image_file\"; \
             filename=\"a %221%22.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nJPEG\r\n\
             --XYZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nBob\r\n\
             --XYZ\r\nContent-Disposition: form-data; name=\"image_file\"; \
             filename=\"b.PNG\"\r\nContent-Type: image/png\r\n\r\nPNG\r\n--XYZ--\r\n"
        );
    }
}
