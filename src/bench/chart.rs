//! SVG latency-by-percentile charts in the manner of HdrHistogram's plotter: the x axis is
//! `log10(1 / (1 - quantile))`, so 90%, 99%, 99.9%... are evenly spaced and the tail gets
//! the room it deserves; the y axis is latency in ms.

use std::path::Path;

use plotters::prelude::*;

/// Chart size in pixels.
const WIDTH_PIXELS: u32 = 1000;
const HEIGHT_PIXELS: u32 = 600;
/// The x axis goes at least to 99% and at most to 99.9999%.
const NINES_MIN: f64 = 2.0;
const NINES_MAX: f64 = 6.0;

/// One curve: a label and its (quantile, latency ms) points.
pub struct Curve<'a> {
    pub label: String,
    pub points: &'a [(f64, f64)],
}

/// Position of `quantile` on the x axis; `None` for 100%, which has no place on it.
pub fn nines(quantile: f64) -> Option<f64> {
    (quantile < 1.0).then(|| (1.0 / (1.0 - quantile)).log10())
}

/// The percentile at x-axis position `x`: 0 → "0%", 1 → "90%", 3 → "99.9%".
pub fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.round() as i64 - 2).clamp(0, 6) as usize;
    format!("{percent:.decimals$}%")
}

pub fn write(path: &Path, title: &str, curves: &[Curve<'_>]) -> Result<(), String> {
    let placed: Vec<Vec<(f64, f64)>> = curves
        .iter()
        .map(|c| {
            c.points
                .iter()
                .filter_map(|&(q, ms)| nines(q).map(|x| (x.min(NINES_MAX), ms)))
                .collect()
        })
        .collect();
    let x_max = placed
        .iter()
        .flatten()
        .map(|p| p.0)
        .fold(NINES_MIN, f64::max)
        .ceil()
        .min(NINES_MAX);
    let y_max = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(0.001)
        * 1.1;
    let root = SVGBackend::new(path, (WIDTH_PIXELS, HEIGHT_PIXELS)).into_drawing_area();
    let failed = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        // Room on the right for the last percentile's label, centred on the edge.
        .margin_right(40)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()
        .map_err(|e| failed(&e))?;
    let palette = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (index, (curve, points)) in curves.iter().zip(&placed).enumerate() {
        let color = palette[index % palette.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| failed(&e))?
            .label(curve.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_sit_at_their_nines() {
        assert_eq!(nines(0.0), Some(0.0));
        assert!((nines(0.99).expect("placed") - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0), None);
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
    }

    #[test]
    fn a_chart_is_an_svg_document_with_its_labels() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chart.svg");
        let points = [
            (0.0, 1.0),
            (0.5, 2.0),
            (0.99, 5.0),
            (0.999, 9.0),
            (1.0, 12.0),
        ];
        write(
            &path,
            "ack latency",
            &[Curve {
                label: "run A".into(),
                points: &points,
            }],
        )
        .expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        for needle in ["ack latency", "run A", "99.9%", "latency (ms)", "<polyline"] {
            assert!(text.contains(needle), "no {needle:?} in the chart");
        }
    }
}
