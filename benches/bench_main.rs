//! The criterion benches of facerec, gathered in one `criterion_main!`: the groups `detect`,
//! `embed` and `analyze` ([`pipeline`]) and `search` ([`search`]).
//!
//! ```text
//! cargo bench -p facerec-benches --bench bench_main              # every group
//! cargo bench -p facerec-benches --bench bench_main -- embed     # groups and benches whose id matches
//! ```

mod pipeline;
mod search;

criterion::criterion_main!(pipeline::benches, search::benches);
