//! The command line and the table of the loopback benchmarks, shared by
//! beep-blocking's and beep-tokio's (each includes this file with
//! `#[path]`).

/// True unless `--only TEXT` names rows that `label` is not one of: rows
/// whose label contains TEXT, or, with a leading `^`, starts with the
/// rest (`--only ^ping-pong` leaves out "TLS ping-pong").
pub fn selected(label: &str) -> bool {
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    only.is_none_or(|text| match text.strip_prefix('^') {
        Some(start) => label.starts_with(start),
        None => label.contains(&text),
    })
}

/// True unless `--side raw` or `--side beep` names the other side: one
/// side alone, for `perf stat` / `perf record` of just that side.
pub fn runs(side: &str) -> bool {
    let only = std::env::args().skip_while(|a| a != "--side").nth(1);
    only.is_none_or(|wanted| wanted == side)
}

/// The number after `name` on the command line.
pub fn arg(name: &str) -> Option<f64> {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|s| s.parse().ok())
}

/// Prints medians and the median ratio with its range over the rounds.
pub fn row(label: &str, raws: &[f64], beeps: &[f64]) {
    if raws.is_empty() || beeps.is_empty() {
        // One side only (`--side`), or the row was not selected.
        let cell = |v: &[f64]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.0}", median(v))
            }
        };
        if !(raws.is_empty() && beeps.is_empty()) {
            println!("| {label} | {} | {} | - |", cell(raws), cell(beeps));
        }
        return;
    }
    let ratios: Vec<f64> = raws.iter().zip(beeps).map(|(r, b)| b / r).collect();
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "| {label} | {:.0} | {:.0} | {:.2}x ({lo:.2}-{hi:.2}) |",
        median(raws),
        median(beeps),
        median(&ratios)
    );
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
