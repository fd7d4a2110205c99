//! Hand-written inline SVG charts for the report: line, scatter, horizontal grouped bar and box
//! plots. Text is plain SVG `<text>` in the viewer's generic sans-serif font, so the report needs no
//! font files, scripts or network. Output is a pure function of the data (fixed decimals), so the
//! same inputs give byte-identical SVG.

use std::fmt::Write as _;

/// Series colours: ours first, the thesis's in grey tones where a chart pairs them.
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];
pub const THESIS_COLOUR: &str = "#555555";

const MARGIN_LEFT: f64 = 58.0;
const MARGIN_RIGHT: f64 = 12.0;
const MARGIN_TOP: f64 = 26.0;
const MARGIN_BOTTOM: f64 = 40.0;

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub colour: String,
    pub dashed: bool,
}

/// Escapes text for XML/HTML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A linear axis: data range mapped to pixels, with "nice" ticks.
#[derive(Debug, Clone, Copy)]
struct Axis {
    low: f64,
    high: f64,
    pixel_low: f64,
    pixel_high: f64,
    /// Ticks only at whole numbers (epochs).
    integer: bool,
}

impl Axis {
    fn new(low: f64, high: f64, pixel_low: f64, pixel_high: f64) -> Axis {
        let (low, high) = if (high - low).abs() < 1e-12 {
            (low - 0.5, high + 0.5)
        } else {
            (low, high)
        };
        Axis {
            low,
            high,
            pixel_low,
            pixel_high,
            integer: false,
        }
    }

    fn pixel(&self, value: f64) -> f64 {
        self.pixel_low
            + (value - self.low) / (self.high - self.low) * (self.pixel_high - self.pixel_low)
    }

    fn step(&self) -> f64 {
        let raw = (self.high - self.low) / 5.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let fraction = raw / magnitude;
        let nice = if fraction < 1.5 {
            1.0
        } else if fraction < 3.0 {
            2.0
        } else if fraction < 7.0 {
            5.0
        } else {
            10.0
        };
        if self.integer {
            (nice * magnitude).max(1.0)
        } else {
            nice * magnitude
        }
    }

    fn ticks(&self) -> Vec<f64> {
        let step = self.step();
        let first = (self.low / step).ceil() as i64;
        let last = (self.high / step).floor() as i64;
        (first..=last).map(|i| i as f64 * step).collect()
    }

    fn label(&self, value: f64) -> String {
        let step = self.step();
        let decimals = if step >= 1.0 {
            0
        } else {
            (-step.log10().floor()) as usize
        };
        let text = format!("{value:.decimals$}");
        if text.starts_with('-') && text.trim_start_matches(['-', '0', '.']).is_empty() {
            text[1..].to_string()
        } else {
            text
        }
    }
}

/// The data range of some values, padded by 5 % (or `fixed` when given).
fn range(values: impl Iterator<Item = f64>, fixed: Option<(f64, f64)>) -> (f64, f64) {
    if let Some(fixed) = fixed {
        return fixed;
    }
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        low = low.min(v);
        high = high.max(v);
    }
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((high - low) * 0.05).max(1e-9);
    (low - pad, high + pad)
}

struct Frame {
    height: f64,
    x: Axis,
    y: Axis,
}

fn open_svg(out: &mut String, width: f64, height: f64, title: &str) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="{t}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="#fff"/><text x="{cx:.1}" y="16" text-anchor="middle" font-size="12" font-weight="bold">{t}</text>"##,
        t = escape(title),
        cx = width / 2.0
    );
}

fn draw_axes(out: &mut String, frame: &Frame, x_label: &str, y_label: &str, x_ticks: bool) {
    let (left, right) = (frame.x.pixel_low, frame.x.pixel_high);
    let (bottom, top) = (frame.y.pixel_low, frame.y.pixel_high);
    for tick in frame.y.ticks() {
        let y = frame.y.pixel(tick);
        let _ = write!(
            out,
            r##"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{lx:.1}" y="{ty:.1}" text-anchor="end">{label}</text>"##,
            lx = left - 4.0,
            ty = y + 3.5,
            label = frame.y.label(tick)
        );
    }
    if x_ticks {
        for tick in frame.x.ticks() {
            let x = frame.x.pixel(tick);
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{b2:.1}" stroke="#333"/><text x="{x:.1}" y="{ty:.1}" text-anchor="middle">{label}</text>"##,
                b2 = bottom + 4.0,
                ty = bottom + 15.0,
                label = frame.x.label(tick)
            );
        }
    }
    let _ = write!(
        out,
        r##"<rect x="{left:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}" fill="none" stroke="#333"/><text x="{cx:.1}" y="{xl:.1}" text-anchor="middle">{xlabel}</text><text transform="translate(13 {cy:.1}) rotate(-90)" text-anchor="middle">{ylabel}</text>"##,
        w = right - left,
        h = bottom - top,
        cx = (left + right) / 2.0,
        xl = frame.height - 6.0,
        cy = (top + bottom) / 2.0,
        xlabel = escape(x_label),
        ylabel = escape(y_label)
    );
}

/// Legend box size: fixed width, one 13-pixel line per entry.
const LEGEND_WIDTH: f64 = 146.0;

/// How much of the drawn lines (pixel polylines, sampled along each segment) a box covers.
fn covered(lines: &[Vec<(f64, f64)>], left: f64, top: f64, width: f64, height: f64) -> usize {
    let inside =
        |(x, y): (f64, f64)| x >= left && x <= left + width && y >= top && y <= top + height;
    lines
        .iter()
        .flat_map(|line| {
            line.windows(2).flat_map(|w| {
                (0..=8).map(move |i| {
                    let t = i as f64 / 8.0;
                    (
                        w[0].0 + t * (w[1].0 - w[0].0),
                        w[0].1 + t * (w[1].1 - w[0].1),
                    )
                })
            })
        })
        .chain(lines.iter().filter(|l| l.len() == 1).map(|l| l[0]))
        .filter(|&p| inside(p))
        .count()
}

fn legend(
    out: &mut String,
    frame: &Frame,
    entries: &[(String, String, bool)],
    lines: &[Vec<(f64, f64)>],
) {
    // In the plot corner that covers the least of the data (lower right, then upper right,
    // lower left, upper left on ties), one entry per line; charts keep legends short.
    let height = 13.0 * entries.len() as f64 + 4.0;
    let (left, right) = (
        frame.x.pixel_low + 4.0,
        frame.x.pixel_high - LEGEND_WIDTH - 4.0,
    );
    let (top, bottom) = (frame.y.pixel_high + 2.0, frame.y.pixel_low - height - 2.0);
    let corners = [(right, bottom), (right, top), (left, bottom), (left, top)];
    let (rx, ry) = corners
        .iter()
        .copied()
        .min_by_key(|&(x, y)| covered(lines, x, y, LEGEND_WIDTH, height))
        .unwrap_or((right, bottom));
    let x = rx + 4.0;
    let mut y = ry + 10.0;
    let _ = write!(
        out,
        r##"<rect x="{rx:.1}" y="{ry:.1}" width="{LEGEND_WIDTH}" height="{height:.1}" fill="#fff" fill-opacity="0.85" stroke="#ccc"/>"##,
    );
    for (label, colour, dashed) in entries {
        let dash = if *dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" y1="{ly:.1}" x2="{x2:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{tx:.1}" y="{ty:.1}">{label}</text>"#,
            ly = y - 3.5,
            x2 = x + 18.0,
            tx = x + 22.0,
            ty = y,
            label = escape(label)
        );
        y += 13.0;
    }
}

fn frame(width: f64, height: f64, x_range: (f64, f64), y_range: (f64, f64)) -> Frame {
    Frame {
        height,
        x: Axis::new(x_range.0, x_range.1, MARGIN_LEFT, width - MARGIN_RIGHT),
        y: Axis::new(y_range.0, y_range.1, height - MARGIN_BOTTOM, MARGIN_TOP),
    }
}

/// A line chart; `y_fixed` pins the y range (e.g. accuracy 0..1).
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series],
    pub y_fixed: Option<(f64, f64)>,
    pub width: f64,
    pub height: f64,
    pub show_legend: bool,
    /// x ticks only at whole numbers (an epoch axis: no "0.5 epochs").
    pub integer_x: bool,
}

impl LineChart<'_> {
    pub fn render(&self) -> String {
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        let x_range = range(points().map(|p| p.0), None);
        let y_range = range(points().map(|p| p.1), self.y_fixed);
        let mut frame = frame(self.width, self.height, x_range, y_range);
        frame.x.integer = self.integer_x;
        let mut out = String::new();
        open_svg(&mut out, self.width, self.height, self.title);
        draw_axes(&mut out, &frame, self.x_label, self.y_label, true);
        for series in self.series {
            let path: Vec<String> = series
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", frame.x.pixel(x), frame.y.pixel(y)))
                .collect();
            if path.is_empty() {
                continue;
            }
            let dash = if series.dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"><title>{}</title></polyline>"#,
                series.colour,
                path.join(" "),
                escape(&series.label)
            );
            if path.len() == 1 {
                let _ = write!(
                    out,
                    r#"<circle r="2.5" fill="{}" cx="{}" cy="{}"/>"#,
                    series.colour,
                    path[0].split(',').next().unwrap_or("0"),
                    path[0].split(',').nth(1).unwrap_or("0")
                );
            }
        }
        if self.show_legend {
            let entries: Vec<(String, String, bool)> = self
                .series
                .iter()
                .map(|s| (s.label.clone(), s.colour.clone(), s.dashed))
                .collect();
            let lines: Vec<Vec<(f64, f64)>> = self
                .series
                .iter()
                .map(|s| {
                    s.points
                        .iter()
                        .filter(|p| p.0.is_finite() && p.1.is_finite())
                        .map(|&(x, y)| (frame.x.pixel(x), frame.y.pixel(y)))
                        .collect()
                })
                .collect();
            legend(&mut out, &frame, &entries, &lines);
        }
        out.push_str("</svg>");
        out
    }
}

/// A group of scatter points.
#[derive(Debug, Clone)]
pub struct PointGroup {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub colour: String,
    /// Hollow markers (the thesis's points) stay readable under filled ones (ours).
    pub hollow: bool,
}

/// A scatter plot of point groups.
pub fn scatter_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    groups: &[PointGroup],
    width: f64,
    height: f64,
) -> String {
    let points = || groups.iter().flat_map(|g| g.points.iter());
    let frame = frame(
        width,
        height,
        range(points().map(|p| p.0), None),
        range(points().map(|p| p.1), None),
    );
    let mut out = String::new();
    open_svg(&mut out, width, height, title);
    draw_axes(&mut out, &frame, x_label, y_label, true);
    for group in groups {
        let fill = if group.hollow {
            "none".to_string()
        } else {
            group.colour.clone()
        };
        let _ = write!(
            out,
            r#"<g fill="{fill}" stroke="{}" fill-opacity="0.6"><title>{}</title>"#,
            group.colour,
            escape(&group.label)
        );
        for &(x, y) in group
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
        {
            let _ = write!(
                out,
                r#"<circle r="2.2" cx="{:.1}" cy="{:.1}"/>"#,
                frame.x.pixel(x),
                frame.y.pixel(y)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// Horizontal grouped bars: one row per category, one bar per group (None = no bar, marked).
pub fn bar_chart(
    title: &str,
    categories: &[String],
    groups: &[(String, String, Vec<Option<f64>>)],
    value_range: (f64, f64),
    width: f64,
) -> String {
    let label_width = 190.0;
    let row_height = 6.0 + 7.0 * groups.len() as f64;
    let height =
        MARGIN_TOP + 14.0 * groups.len() as f64 + row_height * categories.len() as f64 + 34.0;
    let left = label_width;
    let right = width - MARGIN_RIGHT;
    let top = MARGIN_TOP + 14.0 * groups.len() as f64;
    let bottom = height - 28.0;
    let x = Axis::new(value_range.0, value_range.1, left, right);
    let mut out = String::new();
    open_svg(&mut out, width, height, title);
    for (i, (label, colour, _)) in groups.iter().enumerate() {
        let ly = MARGIN_TOP + 2.0 + 14.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{left:.1}" y="{ry:.1}" width="12" height="9" fill="{colour}"/><text x="{tx:.1}" y="{ty:.1}">{}</text>"#,
            escape(label),
            ry = ly - 8.0,
            tx = left + 16.0,
            ty = ly
        );
    }
    for tick in x.ticks() {
        let px = x.pixel(tick);
        let _ = write!(
            out,
            r##"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{bottom:.1}" stroke="#e4e4e4"/><text x="{px:.1}" y="{ty:.1}" text-anchor="middle">{}</text>"##,
            x.label(tick),
            ty = bottom + 14.0
        );
    }
    let zero = x.pixel(0.0_f64.clamp(x.low, x.high));
    for (row, category) in categories.iter().enumerate() {
        let row_top = top + row_height * row as f64;
        let _ = write!(
            out,
            r#"<text x="{lx:.1}" y="{ty:.1}" text-anchor="end">{}</text>"#,
            escape(category),
            lx = left - 6.0,
            ty = row_top + row_height / 2.0 + 3.5
        );
        for (g, (label, colour, values)) in groups.iter().enumerate() {
            let bar_top = row_top + 3.0 + 7.0 * g as f64;
            match values.get(row).copied().flatten() {
                Some(value) if value.is_finite() => {
                    let end = x.pixel(value.clamp(x.low, x.high));
                    let _ = write!(
                        out,
                        r#"<rect x="{:.1}" y="{bar_top:.1}" width="{:.1}" height="6" fill="{colour}"><title>{}: {value:.3}</title></rect>"#,
                        zero.min(end),
                        (end - zero).abs().max(0.5),
                        escape(label)
                    );
                }
                _ => {
                    let _ = write!(
                        out,
                        r##"<text x="{:.1}" y="{:.1}" font-size="8" fill="#999">n/a</text>"##,
                        zero + 2.0,
                        bar_top + 6.0
                    );
                }
            }
        }
    }
    let _ = write!(
        out,
        r##"<line x1="{zero:.1}" y1="{top:.1}" x2="{zero:.1}" y2="{bottom:.1}" stroke="#333"/><rect x="{left:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}" fill="none" stroke="#333"/></svg>"##,
        w = right - left,
        h = bottom - top
    );
    out
}

/// Quartiles by linear interpolation (numpy's default percentile).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
}

/// Box plots (min, quartiles, median, max; the mean as a diamond), one per group.
pub fn box_chart(
    title: &str,
    y_label: &str,
    groups: &[(String, String, Vec<f64>)],
    width: f64,
    height: f64,
) -> String {
    let all = groups.iter().flat_map(|g| g.2.iter().copied());
    let y_range = range(all, None);
    let frame = frame(width, height, (0.0, groups.len() as f64), y_range);
    let mut out = String::new();
    open_svg(&mut out, width, height, title);
    draw_axes(&mut out, &frame, "", y_label, false);
    let slot = (frame.x.pixel_high - frame.x.pixel_low) / groups.len().max(1) as f64;
    for (i, (label, colour, values)) in groups.iter().enumerate() {
        let centre = frame.x.pixel_low + slot * (i as f64 + 0.5);
        let _ = write!(
            out,
            r#"<text x="{centre:.1}" y="{ty:.1}" text-anchor="middle">{}</text>"#,
            escape(label),
            ty = frame.y.pixel_low + 14.0
        );
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            let _ = write!(
                out,
                r##"<text x="{centre:.1}" y="{ty:.1}" text-anchor="middle" fill="#999">no data</text>"##,
                ty = (frame.y.pixel_low + frame.y.pixel_high) / 2.0
            );
            continue;
        }
        sorted.sort_by(f64::total_cmp);
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        let [low, q1, median, q3, high] =
            [0.0, 0.25, 0.5, 0.75, 1.0].map(|q| frame.y.pixel(quantile(&sorted, q)));
        let half = (slot * 0.3).min(30.0);
        let _ = write!(
            out,
            r#"<g stroke="{colour}" stroke-width="1.5"><title>{label}: n={n}, mean {mean:.4}, median {med:.4}</title><line x1="{centre:.1}" y1="{low:.1}" x2="{centre:.1}" y2="{q1:.1}"/><line x1="{centre:.1}" y1="{q3:.1}" x2="{centre:.1}" y2="{high:.1}"/><line x1="{l2:.1}" y1="{low:.1}" x2="{r2:.1}" y2="{low:.1}"/><line x1="{l2:.1}" y1="{high:.1}" x2="{r2:.1}" y2="{high:.1}"/><rect x="{bx:.1}" y="{q3:.1}" width="{bw:.1}" height="{bh:.1}" fill="{colour}" fill-opacity="0.25"/><line x1="{bx:.1}" y1="{median:.1}" x2="{br:.1}" y2="{median:.1}" stroke-width="2.5"/><path d="M{centre:.1} {m1:.1} l4 4 l-4 4 l-4 -4 z" fill="{colour}"/></g>"#,
            label = escape(label),
            n = sorted.len(),
            med = quantile(&sorted, 0.5),
            l2 = centre - half / 2.0,
            r2 = centre + half / 2.0,
            bx = centre - half,
            br = centre + half,
            bw = 2.0 * half,
            bh = (q1 - q3).max(0.5),
            m1 = frame.y.pixel(mean) - 4.0
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_labels_fixed() {
        let axis = Axis::new(0.0, 1.0, 0.0, 100.0);
        assert_eq!(axis.ticks().len(), 6);
        assert_eq!(axis.label(0.2), "0.2");
        let axis = Axis::new(-0.7, 0.7, 0.0, 100.0);
        assert_eq!(axis.label(-0.0), "0.0");
        // An epoch axis of one retraining epoch: whole-number ticks only.
        let mut epochs = Axis::new(-0.05, 1.05, 0.0, 100.0);
        assert_eq!(epochs.ticks().len(), 6);
        epochs.integer = true;
        assert_eq!(epochs.ticks(), vec![0.0, 1.0]);
        assert_eq!(epochs.label(1.0), "1");
    }

    /// The legend moves to a corner the data leaves free: a curve that falls to the lower right
    /// (accuracy against pruning level) does not get it in the lower right, where it used to be.
    #[test]
    fn legend_avoids_the_data() {
        let series = [Series {
            label: "pipe".into(),
            points: vec![(0.0, 1.0), (60.0, 1.0), (80.0, 0.1), (100.0, 0.0)],
            colour: PALETTE[0].into(),
            dashed: false,
        }];
        let svg = LineChart {
            title: "t",
            x_label: "pruned %",
            y_label: "acc",
            series: &series,
            y_fixed: Some((0.0, 1.0)),
            width: 420.0,
            height: 280.0,
            integer_x: false,
            show_legend: true,
        }
        .render();
        let rect = svg.split("<rect x=\"").last().unwrap();
        let x: f64 = rect.split('"').next().unwrap().parse().unwrap();
        let y: f64 = rect
            .split("y=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(!(x > 200.0 && y > 180.0), "legend at {x}, {y}");
    }

    #[test]
    fn charts_are_svg_and_escape_text() {
        let series = [Series {
            label: "a<b".into(),
            points: vec![(1.0, 0.5), (2.0, 0.7)],
            colour: PALETTE[0].into(),
            dashed: false,
        }];
        let svg = LineChart {
            title: "t & u",
            x_label: "x",
            y_label: "y",
            series: &series,
            y_fixed: Some((0.0, 1.0)),
            width: 300.0,
            height: 200.0,
            integer_x: false,
            show_legend: true,
        }
        .render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("t &amp; u") && svg.contains("a&lt;b"));
        let boxes = box_chart(
            "b",
            "acc",
            &[("g".into(), "#000".into(), vec![0.1, 0.5, 0.9])],
            200.0,
            150.0,
        );
        assert!(boxes.contains("mean 0.5000"));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
    }
}
