//! A hand-written SVG plot of how tracked writes spread: the fraction of target nodes holding
//! each write over the time since it was made.

use std::fmt::Write as _;
use std::time::Duration;

use crate::Report;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// At most this many individual curves are drawn (evenly chosen); the envelope uses all.
const MAX_CURVES: usize = 150;
const GRID_POINTS: usize = 300;

/// Renders the spread of the report's tracked writes as an SVG document: one thin line per
/// write (up to 150), the median across writes, the slowest write at each instant, and the
/// epidemic bound as a vertical line.
pub fn spread_svg(report: &Report) -> String {
    let curves = &report.spread.curves;
    let rounds = Report::epidemic_bound_rounds(report.spread.mean_network_size);
    let bound = rounds * crate::report::BOUND_ROUND.as_secs_f64();
    let longest = curves
        .iter()
        .filter_map(|(_, seen)| seen.last())
        .max()
        .copied()
        .unwrap_or(Duration::from_secs(1))
        .as_secs_f64();
    let xmax = nice_ceiling(longest.max(bound * 1.1).max(0.1));
    let px = |t: f64| LEFT + (t / xmax).min(1.0) * (WIDTH - LEFT - RIGHT);
    let py = |frac: f64| TOP + (1.0 - frac.clamp(0.0, 1.0)) * (HEIGHT - TOP - BOTTOM);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let o = &report.options;
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="15">netsim {}: {} nodes, seed {}, loss {}%: spread of {} tracked writes</text>"#,
        o.scenario,
        o.nodes,
        o.seed,
        o.loss * 100.0,
        report.spread.measured
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="40" fill="#555">p50 {} / p99 {} / max {}; epidemic bound {:.2} rounds = {:.2} s</text>"##,
        fmt_opt(report.spread.p50),
        fmt_opt(report.spread.p99),
        fmt_opt(report.spread.max),
        rounds,
        bound
    );
    // Axes and grid.
    for k in 0..=10 {
        let frac = k as f64 / 10.0;
        let y = py(frac);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{:.0}%</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            frac * 100.0
        );
    }
    for k in 0..=10 {
        let t = xmax * k as f64 / 10.0;
        let x = px(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 18.0,
            fmt_secs(t)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>"##,
        WIDTH - LEFT - RIGHT,
        HEIGHT - TOP - BOTTOM
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since the write</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">nodes holding the write</text>"#,
        (TOP + HEIGHT - BOTTOM) / 2.0
    );

    // Individual curves as step functions.
    let step = curves.len().div_ceil(MAX_CURVES).max(1);
    for (targets, seen) in curves.iter().step_by(step) {
        let mut d = format!("M{:.1},{:.1}", px(0.0), py(0.0));
        let mut count = 0usize;
        for t in seen {
            let x = px(t.as_secs_f64());
            let _ = write!(d, " H{x:.1}");
            count += 1;
            let _ = write!(d, " V{:.1}", py(count as f64 / *targets as f64));
        }
        let _ = write!(d, " H{:.1}", px(xmax));
        let _ = writeln!(
            svg,
            r##"<path d="{d}" fill="none" stroke="#4a7bd0" stroke-opacity="0.18" stroke-width="1"/>"##
        );
    }

    // Median and slowest across writes on a grid.
    if !curves.is_empty() {
        let mut median = String::new();
        let mut slowest = String::new();
        for g in 0..=GRID_POINTS {
            let t = xmax * g as f64 / GRID_POINTS as f64;
            let td = Duration::from_secs_f64(t);
            let mut fracs: Vec<f64> = curves
                .iter()
                .map(|(targets, seen)| {
                    seen.partition_point(|s| *s <= td) as f64 / (*targets).max(1) as f64
                })
                .collect();
            fracs.sort_by(f64::total_cmp);
            let med = fracs[fracs.len() / 2];
            let min = fracs[0];
            let cmd = if g == 0 { 'M' } else { 'L' };
            let _ = write!(median, "{cmd}{:.1},{:.1} ", px(t), py(med));
            let _ = write!(slowest, "{cmd}{:.1},{:.1} ", px(t), py(min));
        }
        let _ = writeln!(
            svg,
            r##"<path d="{median}" fill="none" stroke="#0b3d91" stroke-width="2.5"/>"##
        );
        let _ = writeln!(
            svg,
            r##"<path d="{slowest}" fill="none" stroke="#c0392b" stroke-width="2" stroke-dasharray="6 3"/>"##
        );
    }
    let bx = px(bound);
    let _ = writeln!(
        svg,
        r##"<line x1="{bx:.1}" y1="{TOP}" x2="{bx:.1}" y2="{:.1}" stroke="#27ae60" stroke-width="2" stroke-dasharray="2 3"/>"##,
        HEIGHT - BOTTOM
    );
    // Legend.
    let lx = WIDTH - RIGHT - 250.0;
    let ly = HEIGHT - BOTTOM - 80.0;
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="{:.1}" width="240" height="72" fill="white" stroke="#ccc"/>"##,
        lx - 8.0,
        ly - 16.0
    );
    for (k, (color, dash, label)) in [
        ("#0b3d91", "", "median across writes"),
        ("#c0392b", "6 3", "slowest write"),
        ("#4a7bd0", "", "one write"),
        ("#27ae60", "2 3", "epidemic bound"),
    ]
    .iter()
    .enumerate()
    {
        let y = ly + 15.0 * k as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{lx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}">{label}</text>"##,
            lx + 30.0,
            lx + 38.0,
            y + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn fmt_opt(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| fmt_secs(d.as_secs_f64()))
}

fn fmt_secs(t: f64) -> String {
    if t < 1.0 {
        format!("{:.0} ms", t * 1000.0)
    } else {
        format!("{t:.1} s")
    }
}

/// The smallest 1, 2 or 5 times a power of ten at or above `x`.
fn nice_ceiling(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= x {
            return m * p;
        }
    }
    10.0 * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(20.0), 20.0);
    }
}
