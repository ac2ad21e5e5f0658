//! `image_url`: the server fetches a request's image itself, off unless the operator turns it
//! on ([`ImageUrlPolicy`]), and then only from public addresses.
//!
//! A fetch cannot be turned against the server's own network (SSRF): only `http` and `https`,
//! no credentials in the URL, and the host is resolved once, here; every address it resolves
//! to must be globally routable (or listed in [`ImageUrlPolicy::allow`]), and the connection
//! goes to those very addresses: the client gets them as a DNS override and has a resolver
//! that refuses any other lookup, so a name cannot resolve differently the second time (DNS
//! rebinding). The client uses no proxy and follows no redirect itself: each hop is checked
//! here like the first URL. The whole fetch, every hop, connection, headers and body, gets
//! one timeout, and the body is read chunk by chunk up to the image limit.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::{Bytes, BytesMut};
use reqwest::dns::{Name, Resolve, Resolving};
use reqwest::{StatusCode, Url, header};

use crate::ApiError;

/// Whether and where `image_url` parameters are fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUrlPolicy {
    /// Whether `image_url` (`image_url_a`, `image_url_b`) is accepted at all (off; when off
    /// such a request is refused with 1001, naming the flag that turns it on).
    pub enabled: bool,
    /// Hosts fetched from although they are not public: names, addresses or CIDR ranges
    /// (none). Everything else must resolve to globally routable addresses only.
    pub allow: Vec<AllowedHost>,
    /// Time for a whole fetch, redirects included: resolving, connecting, headers and body
    /// (5 s).
    pub timeout: Duration,
    /// Most redirects followed, each checked like the first URL (3).
    pub max_redirects: usize,
}

impl Default for ImageUrlPolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            allow: Vec::new(),
            timeout: Duration::from_secs(5),
            max_redirects: 3,
        }
    }
}

/// A host that image URLs may be fetched from although it is not public: a host name
/// (`images.internal`: whatever it resolves to), an address (`10.0.0.5`, `::1`) or a CIDR
/// range (`10.1.0.0/16`).
///
/// ```
/// use facerec_api::AllowedHost;
/// let range: AllowedHost = "10.1.0.0/16".parse().unwrap();
/// assert_eq!(range.to_string(), "10.1.0.0/16");
/// assert_eq!("Images.Internal.".parse::<AllowedHost>().unwrap().to_string(), "images.internal");
/// assert!("http://images.internal/".parse::<AllowedHost>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHost {
    /// A host name, lower case, without a trailing dot.
    Name(String),
    /// The addresses whose first `prefix` bits are those of `addr` (an address alone is a
    /// range of one).
    Range {
        /// The first address of the range.
        addr: IpAddr,
        /// The length of the prefix in bits.
        prefix: u8,
    },
}

impl AllowedHost {
    fn contains(&self, ip: IpAddr) -> bool {
        let Self::Range { addr, prefix } = self else {
            return false;
        };
        match (*addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    fn names(&self, host: &str) -> bool {
        matches!(self, Self::Name(name) if *name == normal_name(host))
    }
}

fn normal_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl FromStr for AllowedHost {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = |why: &str| {
            format!(
                "'{text}' {why}: give a host name, an address or a CIDR range \
                 (images.internal, 10.0.0.5, 10.1.0.0/16)"
            )
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        if let Ok(ip) = addr.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => bits,
                Some(p) => match p.parse::<u8>() {
                    Ok(p) if p <= bits => p,
                    _ => return Err(bad(&format!("has no prefix length of 0 to {bits}"))),
                },
            };
            let keep = |ip: IpAddr| Self::Range { addr: ip, prefix };
            // the first address of the range, whatever host bits were written
            let first = match ip {
                IpAddr::V4(v4) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                    IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
                }
                IpAddr::V6(v6) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
                }
            };
            return Ok(keep(first));
        }
        if prefix.is_some() {
            return Err(bad("is not a CIDR range"));
        }
        let name = normal_name(text);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad("is not a host name"));
        }
        Ok(Self::Name(name))
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Range { addr, prefix } if u32::from(*prefix) == bits(*addr) => {
                write!(f, "{addr}")
            }
            Self::Range { addr, prefix } => write!(f, "{addr}/{prefix}"),
        }
    }
}

fn bits(ip: IpAddr) -> u32 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// Why `ip` is not a globally routable unicast address, or `None` when it is. IPv6 addresses
/// that embed an IPv4 address (mapped, NAT64, 6to4) are judged by that address.
pub(crate) fn not_public(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => not_public_v4(v4).map(str::to_owned),
        IpAddr::V6(v6) => not_public_v6(v6),
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let n = u32::from(ip);
    let within = |net: [u8; 4], prefix: u32| {
        let mask = u32::MAX << (32 - prefix);
        n & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if within([0, 0, 0, 0], 8) {
        "'this network' (0.0.0.0/8)"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private (RFC 1918)"
    } else if within([100, 64, 0, 0], 10) {
        "shared address space (carrier-grade NAT, 100.64.0.0/10)"
    } else if ip.is_link_local() {
        "link-local"
    } else if within([192, 0, 0, 0], 24) {
        "reserved for IETF protocol assignments (192.0.0.0/24)"
    } else if ip.is_documentation() {
        "reserved for documentation"
    } else if within([192, 88, 99, 0], 24) {
        "the deprecated 6to4 relay anycast range (192.88.99.0/24)"
    } else if within([198, 18, 0, 0], 15) {
        "reserved for benchmarking (198.18.0.0/15)"
    } else if ip.is_multicast() {
        "multicast"
    } else if within([240, 0, 0, 0], 4) {
        "reserved (240.0.0.0/4)"
    } else {
        return None;
    })
}

fn not_public_v6(ip: Ipv6Addr) -> Option<String> {
    let n = u128::from(ip);
    let within = |net: u128, prefix: u32| {
        let mask = u128::MAX << (128 - prefix);
        n & mask == net & mask
    };
    let embedded = |kind: &str, v4: Ipv4Addr| {
        not_public_v4(v4).map(|why| format!("{kind} of {v4}, which is {why}"))
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return embedded("an IPv4-mapped address", v4);
    }
    if within(0x0064_ff9b << 96, 96) {
        return embedded("a NAT64 address", Ipv4Addr::from(n as u32));
    }
    if within(0x2002 << 112, 16) {
        return embedded("a 6to4 address", Ipv4Addr::from((n >> 80) as u32));
    }
    let why = if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if within(0, 96) {
        // ::a.b.c.d, deprecated and routed nowhere
        "an IPv4-compatible address (deprecated, ::/96)"
    } else if within(0xfc00 << 112, 7) {
        "unique local (private, fc00::/7)"
    } else if within(0xfe80 << 112, 10) {
        "link-local"
    } else if within(0xfec0 << 112, 10) {
        "site-local (deprecated, fec0::/10)"
    } else if within(0xff00 << 112, 8) {
        "multicast"
    } else if within(0x2001_0000 << 96, 32) {
        "a Teredo address (2001::/32, embeds IPv4 addresses)"
    } else if within(0x2001_0db8 << 96, 32) || within(0x3fff << 112, 20) {
        "reserved for documentation"
    } else if within(0x2001 << 112, 23) {
        "reserved for IETF protocol assignments (2001::/23)"
    } else if !within(0x2000 << 112, 3) {
        // outside 2000::/3, the only global unicast allocation: 64:ff9b:1::/48, 100::/64,
        // 5f00::/16 and the unallocated rest
        "not global unicast (outside 2000::/3)"
    } else {
        return None;
    };
    Some(why.to_owned())
}

/// The refusal of `name` when image URLs are off.
pub(crate) fn disabled(name: &'static str) -> ApiError {
    ApiError::BadArgument {
        name,
        reason: "this server does not fetch images from URLs; it does when started with \
                 --allow-image-urls (send the image as a file or as base64 text instead)"
            .to_owned(),
    }
}

/// Why a fetch did not give an image.
#[derive(Debug)]
enum Failure {
    /// The URL (or a redirect's) is refused before anything is fetched: 1001.
    Refused(String),
    /// The fetch failed: 1004.
    Failed(String),
    /// More bytes than an image may have: 1004 with 413.
    TooLarge(String),
}

impl Failure {
    fn into_api(self, name: &'static str) -> ApiError {
        match self {
            Self::Refused(reason) => ApiError::BadArgument { name, reason },
            Self::Failed(reason) => ApiError::ImageFetch {
                name,
                reason,
                too_large: false,
            },
            Self::TooLarge(reason) => ApiError::ImageFetch {
                name,
                reason,
                too_large: true,
            },
        }
    }
}

/// The image at `url` (parameter `name`), fetched under `policy` and held to `max_bytes`.
pub(crate) async fn fetch_image(
    name: &'static str,
    url: &str,
    policy: &ImageUrlPolicy,
    max_bytes: usize,
) -> Result<Bytes, ApiError> {
    if !policy.enabled {
        return Err(disabled(name));
    }
    let url = Url::parse(url.trim()).map_err(|e| ApiError::BadArgument {
        name,
        reason: format!("'{}' is not a valid URL: {e}", shown(url)),
    })?;
    let started = Instant::now();
    let fetched = actix_web::rt::time::timeout(policy.timeout, follow(&url, policy, max_bytes))
        .await
        .unwrap_or_else(|_| {
            Err(Failure::Failed(format!(
                "'{}' was not fetched within {} (resolving, connecting, redirects, headers and \
                 body together)",
                link(&url),
                seconds(policy.timeout)
            )))
        });
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match fetched {
        Ok(bytes) => {
            tracing::info!(
                param = name,
                host = url.host_str(),
                bytes = bytes.len(),
                elapsed_ms,
                "image URL fetched"
            );
            Ok(bytes)
        }
        Err(failure) => {
            tracing::info!(
                param = name,
                host = url.host_str(),
                elapsed_ms,
                ?failure,
                "image URL not fetched"
            );
            Err(failure.into_api(name))
        }
    }
}

/// Fetches `url`, following up to `policy.max_redirects` redirects, each checked.
async fn follow(first: &Url, policy: &ImageUrlPolicy, max_bytes: usize) -> Result<Bytes, Failure> {
    let mut url = first.clone();
    let mut redirects = 0;
    loop {
        let addrs = checked_addrs(&url, policy)
            .await
            .map_err(|failure| match failure {
                Failure::Refused(why) if redirects > 0 => Failure::Refused(format!(
                    "the URL redirected to '{}', which is refused: {why}",
                    link(&url)
                )),
                other => other,
            })?;
        let response = get(&url, &addrs).await?;
        let status = response.status();
        if status.is_redirection() && is_followed(status) {
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| {
                    Failure::Failed(format!(
                        "'{}' answered HTTP {status} without a usable Location header",
                        link(&url)
                    ))
                })?;
            let next = url.join(location).map_err(|e| {
                Failure::Refused(format!(
                    "'{}' redirected to '{}', which is not a valid URL: {e}",
                    link(&url),
                    shown(location)
                ))
            })?;
            if redirects == policy.max_redirects {
                return Err(Failure::Failed(format!(
                    "'{}' redirected more than {} times (the last time from '{}' to '{}')",
                    link(first),
                    policy.max_redirects,
                    link(&url),
                    link(&next)
                )));
            }
            redirects += 1;
            url = next;
            continue;
        }
        if !status.is_success() {
            return Err(Failure::Failed(format!(
                "'{}' answered HTTP {status}, not 200",
                link(&url)
            )));
        }
        return read_body(&url, response, max_bytes).await;
    }
}

fn is_followed(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The addresses `url` may be fetched from: its scheme, credentials and every address its
/// host resolves to checked against `policy`.
async fn checked_addrs(url: &Url, policy: &ImageUrlPolicy) -> Result<Vec<SocketAddr>, Failure> {
    let refused = |why: String| Err(Failure::Refused(why));
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return refused(format!(
                "the scheme '{other}' is not fetched: only http and https URLs are"
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refused(
            "URLs with credentials (user:password@host) are refused: give a URL that needs \
             none"
                .to_owned(),
        );
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return refused("the URL has no host".to_owned());
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs = match url.domain() {
        Some(name) => {
            let addrs = resolve(name, port).await?;
            if policy.allow.iter().any(|a| a.names(name)) {
                return Ok(addrs);
            }
            addrs
        }
        // an address: the parser wrote it canonically, IPv6 in brackets
        None => match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => return refused(format!("the host '{host}' is not an address")),
        },
    };
    for addr in &addrs {
        let ip = addr.ip();
        if let Some(why) = not_public(ip)
            && !policy.allow.iter().any(|a| a.contains(ip))
        {
            let what = match url.domain() {
                Some(name) => format!("host '{name}' resolves to {ip}, which"),
                None => format!("address {ip}"),
            };
            return refused(format!(
                "{what} is {why}: only public addresses are fetched (unless the host is \
                 listed with --image-url-allow)"
            ));
        }
    }
    Ok(addrs)
}

/// The one resolution of `host`, on a blocking thread (the system resolver blocks).
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    let owned = host.to_owned();
    let resolved = actix_web::rt::task::spawn_blocking(move || {
        (owned.as_str(), port)
            .to_socket_addrs()
            .map(|addrs| addrs.collect::<Vec<_>>())
    })
    .await
    .map_err(|e| Failure::Failed(format!("resolving host '{host}' failed: {e}")))?;
    match resolved {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(Failure::Failed(format!(
            "host '{host}' resolves to no address"
        ))),
        Err(e) => Err(Failure::Failed(format!(
            "host '{host}' cannot be resolved: {e}"
        ))),
    }
}

/// A resolver that resolves nothing: the client only reaches the addresses it was given.
struct NoSecondLookup;

impl Resolve for NoSecondLookup {
    fn resolve(&self, name: Name) -> Resolving {
        let message = format!("'{}' was not resolved and checked first", name.as_str());
        Box::pin(async move { Err(message.into()) })
    }
}

/// GET `url`, connecting only to `addrs` (the checked addresses of its host).
async fn get(url: &Url, addrs: &[SocketAddr]) -> Result<reqwest::Response, Failure> {
    let mut client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(NoSecondLookup))
        .pool_max_idle_per_host(0)
        .user_agent(concat!(
            "facerec/",
            env!("CARGO_PKG_VERSION"),
            " (image_url)"
        ));
    if let Some(name) = url.domain() {
        client = client.resolve_to_addrs(name, addrs);
    }
    let client = client
        .build()
        .map_err(|e| Failure::Failed(format!("cannot set up the HTTP client: {}", chain(&e))))?;
    client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| Failure::Failed(format!("cannot fetch '{}': {}", link(url), chain(&e))))
}

/// The body of `response`, refused as soon as it passes `max_bytes` (by its Content-Length,
/// or while it streams in).
async fn read_body(
    url: &Url,
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<Bytes, Failure> {
    let too_large = |what: String| {
        Failure::TooLarge(format!(
            "the image at '{}' is larger than {max_bytes} bytes ({what})",
            link(url)
        ))
    };
    let declared = response.content_length();
    if let Some(len) = declared
        && len > max_bytes as u64
    {
        return Err(too_large(format!("Content-Length: {len}")));
    }
    let mut buf = BytesMut::with_capacity(declared.map_or(64 * 1024, |n| n as usize));
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        Failure::Failed(format!(
            "reading the body of '{}' failed: {}",
            link(url),
            chain(&e)
        ))
    })? {
        if buf.len() + chunk.len() > max_bytes {
            return Err(too_large(format!(
                "stopped reading after {} bytes",
                buf.len() + chunk.len()
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// An error and its causes, `: `-separated; reqwest's own words name the URL, which the
/// messages here already do.
fn chain(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    if out.is_empty() {
        out = e.to_string();
    }
    out
}

/// A URL as shown in a message: without credentials, at most 200 characters.
fn link(url: &Url) -> String {
    let mut url = url.clone();
    // only fails for URLs that cannot have credentials
    let _ = url.set_username("");
    let _ = url.set_password(None);
    shown(url.as_str())
}

/// Client text as shown in a message: at most 200 characters.
fn shown(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(ip: &str) -> Option<String> {
        not_public(ip.parse().unwrap())
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv4_that_is_not_public_is_named() {
        for (ip, why) in [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "this network"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("169.254.169.254", "link-local"),
            ("192.0.0.9", "IETF"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("192.88.99.1", "6to4 relay"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.254", "reserved"),
            ("255.255.255.255", "broadcast"),
        ] {
            let found = reason(ip).unwrap_or_else(|| panic!("{ip} passed"));
            assert!(found.contains(why), "{ip}: {found}");
        }
    }

    #[test]
    fn ipv6_that_is_not_public_is_named() {
        for (ip, why) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            (
                "::ffff:127.0.0.1",
                "IPv4-mapped address of 127.0.0.1, which is loopback",
            ),
            (
                "::ffff:10.0.0.1",
                "IPv4-mapped address of 10.0.0.1, which is private",
            ),
            (
                "::ffff:169.254.169.254",
                "169.254.169.254, which is link-local",
            ),
            ("::127.0.0.1", "IPv4-compatible"),
            ("::8.8.8.8", "IPv4-compatible"),
            (
                "64:ff9b::7f00:1",
                "NAT64 address of 127.0.0.1, which is loopback",
            ),
            ("64:ff9b::a00:1", "NAT64 address of 10.0.0.1"),
            ("64:ff9b:1::8.8.8.8", "outside 2000::/3"),
            ("2002:7f00:1::", "6to4 address of 127.0.0.1"),
            (
                "2002:c0a8:101::1",
                "6to4 address of 192.168.1.1, which is private",
            ),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("2001:2::1", "IETF"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("100::1", "outside 2000::/3"),
            ("5f00::1", "outside 2000::/3"),
            ("4000::1", "outside 2000::/3"),
        ] {
            let found = reason(ip).unwrap_or_else(|| panic!("{ip} passed"));
            assert!(found.contains(why), "{ip}: {found}");
        }
    }

    #[test]
    fn allowed_hosts_parse_and_match() {
        let allow = |text: &str| text.parse::<AllowedHost>().unwrap();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(allow("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(allow("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(!allow("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(allow("10.1.0.0/16").contains(ip("10.1.255.7")));
        assert!(!allow("10.1.0.0/16").contains(ip("10.2.0.1")));
        // host bits are dropped: 10.1.2.3/16 is 10.1.0.0/16
        assert_eq!(allow("10.1.2.3/16").to_string(), "10.1.0.0/16");
        assert!(allow("0.0.0.0/0").contains(ip("192.168.0.1")));
        assert!(!allow("0.0.0.0/0").contains(ip("::1")));
        assert!(allow("[::1]").contains(ip("::1")));
        assert!(allow("fd00::/8").contains(ip("fd12::1")));
        assert!(!allow("fd00::/8").contains(ip("fc00::1")));
        assert_eq!(allow("::1").to_string(), "::1");
        assert!(allow("Images.Internal.").names("images.internal"));
        assert!(allow("images.internal").names("IMAGES.internal."));
        assert!(!allow("images.internal").names("evil.internal"));
        assert!(!allow("images.internal").contains(ip("10.0.0.1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "http://images.internal/",
            "images internal",
            "host/16",
            "a..b",
        ] {
            let err = bad.parse::<AllowedHost>().unwrap_err();
            assert!(err.contains("CIDR"), "{bad}: {err}");
        }
    }

    fn enabled() -> ImageUrlPolicy {
        ImageUrlPolicy {
            enabled: true,
            ..ImageUrlPolicy::default()
        }
    }

    fn refusal(url: &str, policy: &ImageUrlPolicy) -> String {
        let url = Url::parse(url).unwrap();
        actix_web::rt::System::new().block_on(async {
            match checked_addrs(&url, policy).await {
                Err(Failure::Refused(why)) => why,
                other => panic!("{url}: {other:?}"),
            }
        })
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        let policy = enabled();
        assert!(refusal("ftp://example.com/a.jpg", &policy).contains("'ftp'"));
        assert!(refusal("file:///etc/passwd", &policy).contains("'file'"));
        assert!(refusal("http://user:pw@example.com/", &policy).contains("credentials"));
        assert!(refusal("http://user@example.com/", &policy).contains("credentials"));
        let loopback = refusal("http://127.0.0.1:8080/", &policy);
        assert!(loopback.contains("127.0.0.1 is loopback"), "{loopback}");
        // the URL parser reads every spelling of an IPv4 address
        for spelled in ["http://2130706433/", "http://0x7f.1/", "http://127.1/"] {
            let why = refusal(spelled, &policy);
            assert!(why.contains("127.0.0.1 is loopback"), "{spelled}: {why}");
        }
        let mapped = refusal("http://[::ffff:127.0.0.1]/", &policy);
        assert!(mapped.contains("IPv4-mapped"), "{mapped}");
        let name = refusal("http://localhost/", &policy);
        assert!(name.contains("host 'localhost' resolves to"), "{name}");
        // an allowed address lets that one through, not its neighbours
        let allowing = ImageUrlPolicy {
            allow: vec!["127.0.0.1".parse().unwrap()],
            ..enabled()
        };
        let why = refusal("http://127.0.0.2/", &allowing);
        assert!(why.contains("127.0.0.2 is loopback"), "{why}");
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let addrs = actix_web::rt::System::new()
            .block_on(checked_addrs(&url, &allowing))
            .unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:9".parse().unwrap()]);
    }

    /// The connection goes to the checked addresses, never to a second lookup of the name:
    /// `rebinding.test` resolves nowhere, yet the fetch reaches the local server it was
    /// checked as.
    #[test]
    fn the_checked_addresses_are_the_ones_connected_to() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                )
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let url = Url::parse(&format!("http://rebinding.test:{}/x", addr.port())).unwrap();
        let body = actix_web::rt::System::new().block_on(async {
            let response = get(&url, &[addr]).await.unwrap();
            read_body(&url, response, 100).await.unwrap()
        });
        assert_eq!(&body[..], b"hello");
        let head = server.join().unwrap();
        assert!(
            head.to_ascii_lowercase().contains("host: rebinding.test:"),
            "{head}"
        );
        // and the client's own resolver, there for any other name, resolves nothing
        let name: Name = "rebinding.test".parse().unwrap();
        let err = actix_web::rt::System::new()
            .block_on(NoSecondLookup.resolve(name))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("not resolved and checked first"),
            "{err}"
        );
    }

    #[test]
    fn refusals_and_failures_have_their_codes() {
        use actix_web::ResponseError;
        let answer = |f: Failure| {
            let e = f.into_api("image_url");
            (e.status_code().as_u16(), e.code().code())
        };
        assert_eq!(answer(Failure::Refused("x".into())), (400, 1001));
        assert_eq!(answer(Failure::Failed("x".into())), (400, 1004));
        assert_eq!(answer(Failure::TooLarge("x".into())), (413, 1004));
        let off = disabled("image_url");
        assert_eq!(off.code().code(), 1001);
        assert!(off.to_string().contains("--allow-image-urls"), "{off}");
    }

    #[test]
    fn long_urls_are_shortened_in_messages() {
        let long = format!("http://example.com/{}", "é".repeat(300));
        let text = shown(&long);
        assert_eq!(text.chars().count(), 203);
        assert!(text.ends_with("..."));
        assert_eq!(shown("http://a/"), "http://a/");
    }
}
