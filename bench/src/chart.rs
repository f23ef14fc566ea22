//! The harness's chart: req/s ÷ bare per configuration and workload, as an SVG of grouped
//! horizontal bars, drawn from the results table the harness writes (so `loadtest chart FILE`
//! can redraw it from a table already in a file).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One configuration's ratios.
#[derive(Debug, PartialEq)]
pub(crate) struct Row {
    pub(crate) config: String,
    pub(crate) read: Option<f64>,
    pub(crate) writes: Option<f64>,
}

/// The rows of the results table in `markdown` (`| config | workload | ... | req/s ÷ bare | ...`),
/// in table order.
pub(crate) fn rows(markdown: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for line in markdown.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // ["", config, workload, req/s, p50, p99, ratio, p99 ratio, saves, ""]
        let [_, config, workload, _, _, _, ratio, ..] = cells[..] else {
            continue;
        };
        let Ok(ratio) = ratio.parse::<f64>() else {
            continue;
        };
        let at = match rows.iter().position(|row| row.config == config) {
            Some(at) => at,
            None => {
                rows.push(Row {
                    config: config.to_owned(),
                    read: None,
                    writes: None,
                });
                rows.len() - 1
            }
        };
        match workload {
            "read" => rows[at].read = Some(ratio),
            "50% writes" => rows[at].writes = Some(ratio),
            _ => {}
        }
    }
    rows
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The fill of a configuration's bars: bare grey, the peers (tower-sessions) orange, keycard
/// blue; the write workload a lighter shade.
fn color(config: &str, writes: bool) -> &'static str {
    match (config, writes) {
        ("bare-axum", false) => "#6b6b6b",
        ("bare-axum", true) => "#b5b5b5",
        (peer, false) if peer.starts_with("tower-sessions") => "#d9730d",
        (peer, true) if peer.starts_with("tower-sessions") => "#f2b27a",
        (_, false) => "#1f5fbf",
        (_, true) => "#8fb3e8",
    }
}

/// The chart of `rows`.
pub(crate) fn svg(title: &str, rows: &[Row]) -> String {
    const LABEL: f64 = 250.0;
    const PLOT: f64 = 480.0;
    const BAR: f64 = 14.0;
    const GROUP: f64 = 2.0 * BAR + 12.0;
    const TOP: f64 = 48.0;
    let max = rows
        .iter()
        .flat_map(|row| [row.read, row.writes])
        .flatten()
        .fold(1.0_f64, f64::max);
    let width = LABEL + PLOT + 70.0;
    let height = TOP + GROUP * rows.len() as f64 + 40.0;
    let x = |ratio: f64| LABEL + PLOT * ratio / max;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        out,
        r##"<text x="10" y="38" fill="#444">dark: read · light: 50% writes · grey: bare axum · orange: tower-sessions · blue: keycard</text>"##
    );
    for tick in 0..=((max * 4.0).ceil() as u32) {
        let ratio = f64::from(tick) / 4.0;
        if ratio > max {
            break;
        }
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle" fill="#444">{ratio:.2}</text>"##,
            x(ratio),
            height - 30.0,
            height - 16.0
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + GROUP * i as f64 + 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LABEL - 8.0,
            y + BAR + 4.0,
            escape(&row.config)
        );
        for (n, (ratio, writes)) in [(row.read, false), (row.writes, true)]
            .into_iter()
            .enumerate()
        {
            let Some(ratio) = ratio else { continue };
            let top = y + BAR * n as f64;
            let _ = writeln!(
                out,
                r#"<rect x="{LABEL}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {ratio:.3}</title></rect><text x="{:.1}" y="{:.1}">{ratio:.3}</text>"#,
                x(ratio) - LABEL,
                BAR - 2.0,
                color(&row.config, writes),
                escape(&row.config),
                if writes { "50% writes" } else { "read" },
                x(ratio) + 4.0,
                top + BAR - 3.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// The chart's file beside a results file: `BENCHMARKS.md` → `BENCHMARKS.svg`.
pub(crate) fn path_beside(results: &Path) -> PathBuf {
    results.with_extension("svg")
}

/// `loadtest chart FILE`: draws the chart of the results table in FILE beside it.
pub(crate) fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [file] = args else {
        return Err("usage: loadtest chart RESULTS.md".into());
    };
    let path = Path::new(file);
    let text = std::fs::read_to_string(path)?;
    // The harness's own section, when the file has one (other tables in it are not this run's).
    let section = match (
        text.find(crate::driver::BEGIN),
        text.find(crate::driver::END),
    ) {
        (Some(start), Some(end)) if end > start => &text[start..end],
        _ => text.as_str(),
    };
    let written = write_beside(path, section)?;
    eprintln!("loadtest: chart written to {}", written.display());
    Ok(())
}

/// Writes the chart of the table in `markdown` beside `results`; returns its path.
pub(crate) fn write_beside(
    results: &Path,
    markdown: &str,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let rows = rows(markdown);
    if rows.is_empty() {
        return Err(format!("{}: no results table to chart", results.display()).into());
    }
    let path = path_beside(results);
    std::fs::write(&path, svg("keycard load harness: req/s ÷ bare axum", &rows))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
| config | workload | req/s | p50 µs | p99 µs | req/s ÷ bare | p99 ÷ bare | saves per write |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
| bare-axum | read | 100 | 1 | 2 | 1.000 | 1.00 | – |
| bare-axum | 50% writes | 101 | 1 | 2 | 1.010 | 1.00 | – |
| keycard-memory | read | 75 | 1 | 2 | 0.752 | 1.14 | 0 (total) |
| keycard-memory | 50% writes | 64 | 1 | 2 | 0.644 | 1.43 | 1.000 |
| tower-sessions-redis | read | 37 | 1 | 2 | 0.371 | 1.84 | – |
";

    #[test]
    fn rows_come_from_the_table_in_order() {
        let rows = rows(TABLE);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].config, "keycard-memory");
        assert_eq!((rows[1].read, rows[1].writes), (Some(0.752), Some(0.644)));
        assert_eq!(rows[2].writes, None);
    }

    #[test]
    fn the_chart_has_one_bar_per_measurement_and_escapes_text() {
        let svg = svg("a < b & c", &rows(TABLE));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect x=").count(), 5);
        assert!(svg.contains("a &lt; b &amp; c"));
        assert!(svg.contains(">0.644<") && svg.contains("#d9730d"));
    }
}
