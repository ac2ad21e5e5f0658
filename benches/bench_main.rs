//! The criterion benches of facerec, gathered in one `criterion_main!`: the groups `detect`,
//! `embed` and `analyze` ([`pipeline`]), `search` ([`search`]) and `auth` ([`auth`]).
//!
//! ```text
//! cargo bench --workspace --bench bench_main              # every group
//! cargo bench --workspace --bench bench_main -- embed     # groups and benches whose id matches
//! ```

mod auth;
mod pipeline;
mod search;

criterion::criterion_main!(pipeline::benches, search::benches, auth::benches);
