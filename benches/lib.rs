//! Benches live in `benches/`. This library holds what the benches that print tables instead
//! of criterion's statistics (`layers`, `stages`) share.

/// The run count of a table bench called `name`, or `None` when the command line filters it
/// out.
///
/// `cargo bench` passes `--bench` and whatever follows `--`: a number among the arguments
/// sets the run count (else `default_runs`), and any other word is a name filter, as
/// criterion takes it: `-- stages` runs the `stages` bench, `-- embed` skips it.
pub fn table_bench_runs(name: &str, default_runs: usize) -> Option<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = args
        .iter()
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(default_runs);
    let filtered_out = args
        .iter()
        .filter(|a| !a.starts_with('-') && a.parse::<usize>().is_err())
        .any(|filter| !name.contains(filter.as_str()));
    (!filtered_out).then_some(runs)
}
