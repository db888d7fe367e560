//! Line plots as SVG, written by hand: axes with ticks (a logarithmic x
//! axis for sweeps over table sizes), one line per series with a marker per
//! point, a legend and labels. Enough for the benchmark report; no plotting
//! crate.

use std::fmt::Write;

/// One line of a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// (x, y) in data units, in drawing order.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// A logarithmic x axis (decades); x values must then be positive.
    pub x_log: bool,
    /// The y axis starts at zero (throughput), not at the data's minimum.
    pub y_from_zero: bool,
    /// A circle at every point (off for dense curves such as a CDF).
    pub markers: bool,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 62.0;
const COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Text safe inside an XML element or a double-quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A number as a short label: 1k, 100k, 1M, 2.5, 0.01.
pub fn short(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e9 {
        format!("{}G", trim(format!("{:.2}", v / 1e9)))
    } else if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e3 {
        format!("{}k", trim(format!("{:.2}", v / 1e3)))
    } else if a == 0.0 || a >= 1.0 {
        trim(format!("{v:.2}"))
    } else {
        trim(format!("{v:.4}"))
    }
}

/// Round tick positions covering [lo, hi]: steps of 1, 2 or 5 × 10^k.
pub fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if hi <= lo || hi.is_nan() || lo.is_nan() {
        return vec![lo];
    }
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut t = first;
    while t <= hi + step * 1e-9 {
        // k × step, rounded to clear binary fractions (0.6, not 0.6000000000000001).
        out.push((((t / step).round() * step) * 1e9).round() / 1e9);
        t += step;
    }
    if let Some(&l) = out.last() {
        if l < hi {
            out.push(((l + step) * 1e9).round() / 1e9);
        }
    }
    out
}

/// Decades covering [lo, hi] (both positive).
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let a = lo.log10().floor() as i32;
    let b = hi.log10().ceil().max(a as f64 + 1.0) as i32;
    (a..=b).map(|e| 10f64.powi(e)).collect()
}

impl Plot {
    /// The finite points of every series (with positive x on a log axis).
    fn usable(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let log = self.x_log;
        self.series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(move |(x, y)| x.is_finite() && y.is_finite() && (!log || *x > 0.0))
    }

    /// The SVG document.
    pub fn render(&self) -> String {
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y) in self.usable() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (1.0, 10.0, 0.0, 1.0);
        }
        if self.y_from_zero {
            y0 = y0.min(0.0);
        }
        let x_ticks = if self.x_log {
            log_ticks(x0, x1)
        } else {
            linear_ticks(x0, x1)
        };
        let y_ticks = linear_ticks(y0, if y1 > y0 { y1 } else { y0 + 1.0 });
        let (xa, xb) = (x_ticks[0], *x_ticks.last().unwrap());
        let (ya, yb) = (y_ticks[0], *y_ticks.last().unwrap());
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let fx = |x: f64| -> f64 {
            let t = if self.x_log {
                (x.log10() - xa.log10()) / (xb.log10() - xa.log10()).max(1e-12)
            } else {
                (x - xa) / (xb - xa).max(1e-12)
            };
            LEFT + t * pw
        };
        let fy = |y: f64| -> f64 { TOP + ph - (y - ya) / (yb - ya).max(1e-12) * ph };

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
            WIDTH / 2.0,
            escape(&self.title)
        );
        // Grid and ticks.
        let _ = writeln!(s, r##"<g class="grid" stroke="#dddddd" stroke-width="1">"##);
        for &t in &x_ticks {
            let x = fx(t);
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"/>"#,
                TOP + ph
            );
        }
        for &t in &y_ticks {
            let y = fy(t);
            let _ = writeln!(
                s,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/>"#,
                LEFT + pw
            );
        }
        let _ = writeln!(s, "</g>");
        let _ = writeln!(
            s,
            r#"<g class="axes" stroke="black" stroke-width="1.2"><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}"/></g>"#,
            TOP + ph,
            LEFT + pw,
            TOP + ph,
            TOP + ph
        );
        let _ = writeln!(s, r#"<g class="x-ticks" text-anchor="middle">"#);
        for &t in &x_ticks {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                fx(t),
                TOP + ph + 18.0,
                escape(&short(t))
            );
        }
        let _ = writeln!(s, "</g>");
        let _ = writeln!(s, r#"<g class="y-ticks" text-anchor="end">"#);
        for &t in &y_ticks {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                LEFT - 8.0,
                fy(t) + 4.0,
                escape(&short(t))
            );
        }
        let _ = writeln!(s, "</g>");
        let _ = writeln!(
            s,
            r#"<text class="x-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            HEIGHT - 16.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text class="y-label" x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        // The series.
        for (i, series) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let pts: Vec<(f64, f64)> = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.x_log || *x > 0.0))
                .collect();
            let _ = writeln!(
                s,
                r#"<g class="series" data-name="{}">"#,
                escape(&series.name)
            );
            if pts.len() > 1 {
                let path: Vec<String> = pts
                    .iter()
                    .map(|&(x, y)| format!("{:.1},{:.1}", fx(x), fy(y)))
                    .collect();
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                    path.join(" ")
                );
            }
            if self.markers {
                for &(x, y) in &pts {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"><title>{}: {} → {}</title></circle>"#,
                        fx(x),
                        fy(y),
                        escape(&series.name),
                        escape(&short(x)),
                        escape(&short(y))
                    );
                }
            }
            // Legend entry, top right, one line each.
            let ly = TOP + 14.0 + 18.0 * i as f64;
            let lx = LEFT + pw - 190.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
                ly - 4.0,
                lx + 22.0,
                ly - 4.0,
                lx + 28.0,
                escape(&series.name)
            );
            let _ = writeln!(s, "</g>");
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(x_log: bool, markers: bool) -> Plot {
        Plot {
            title: "Throughput vs routes <IPv4 & \"v6\">".into(),
            x_label: "routes".into(),
            y_label: "Mpps per core".into(),
            x_log,
            y_from_zero: true,
            markers,
            series: vec![
                Series {
                    name: "sluice".into(),
                    points: vec![(1e3, 24.0), (1e4, 23.5), (1e5, 22.1), (1e6, 19.8)],
                },
                Series {
                    name: "ovs-dpdk".into(),
                    points: vec![(1e3, 10.5), (1e6, 9.0), (0.0, 1.0), (f64::NAN, 3.0)],
                },
            ],
        }
    }

    #[test]
    fn the_svg_is_well_formed_with_a_marker_per_usable_point() {
        let svg = plot(true, true).render();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        let circles = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count();
        // 4 + 2: x = 0 has no place on a log axis, NaN none anywhere.
        assert_eq!(circles, 6);
        let lines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .count();
        assert_eq!(lines, 2);
        // The title survives escaping.
        assert!(doc
            .descendants()
            .any(|n| n.text() == Some("Throughput vs routes <IPv4 & \"v6\">")));
        // Decade ticks 1k..1M.
        let ticks: Vec<&str> = doc
            .descendants()
            .filter(|n| {
                n.parent()
                    .is_some_and(|p| p.attribute("class") == Some("x-ticks"))
            })
            .filter(|n| n.is_element())
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(ticks, ["1k", "10k", "100k", "1M"]);
    }

    #[test]
    fn points_fall_inside_the_plot_area_in_order() {
        let svg = plot(true, true).render();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let xs: Vec<(f64, f64)> = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .map(|n| {
                (
                    n.attribute("cx").unwrap().parse().unwrap(),
                    n.attribute("cy").unwrap().parse().unwrap(),
                )
            })
            .collect();
        for &(x, y) in &xs {
            assert!((LEFT..=WIDTH - RIGHT).contains(&x), "{x}");
            assert!((TOP..=HEIGHT - BOTTOM).contains(&y), "{y}");
        }
        // The first series: x grows by decades, y falls as throughput does.
        assert!(xs[..4]
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        // Equal steps on a log axis for equal ratios.
        let d1 = xs[1].0 - xs[0].0;
        let d2 = xs[2].0 - xs[1].0;
        assert!((d1 - d2).abs() < 0.2, "{d1} {d2}");
    }

    #[test]
    fn a_linear_plot_without_markers_and_an_empty_plot_render() {
        let svg = plot(false, false).render();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("circle"))
                .count(),
            0
        );
        let empty = Plot {
            series: vec![],
            ..plot(false, true)
        };
        roxmltree::Document::parse(&empty.render()).unwrap();
    }

    #[test]
    fn ticks_and_labels() {
        assert_eq!(
            linear_ticks(0.0, 24.0),
            vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
        );
        assert_eq!(linear_ticks(0.0, 1.0), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(log_ticks(1000.0, 1e6), vec![1e3, 1e4, 1e5, 1e6]);
        assert_eq!(log_ticks(1500.0, 2e6), vec![1e3, 1e4, 1e5, 1e6, 1e7]);
        assert_eq!(short(1_000_000.0), "1M");
        assert_eq!(short(10_000_000.0), "10M");
        assert_eq!(short(2500.0), "2.5k");
        assert_eq!(short(0.5), "0.5");
        assert_eq!(escape("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
    }
}
