//! Charts as SVG, drawn by the server: lines over time and horizontal bars. Every number
//! drawn is also text (`<title>` of each point, the value beside each bar, the totals in
//! the legend), so a person hovering and a test reading the page see the same figures.

use std::fmt::Write;

use super::page::html_escape;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
/// Left margin (y labels), right, top, bottom (x labels and legend).
const MARGIN: (f64, f64, f64, f64) = (44.0, 12.0, 12.0, 52.0);
/// One colour per series, in order.
const COLOURS: &[&str] = &[
    "#4e79a7", "#e15759", "#f28e2b", "#b07aa1", "#76b7b2", "#59a14f",
];

/// The smallest "round" number (1, 2 or 5 × 10ⁿ, at least 1) not below `max`.
pub(crate) fn nice_max(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if step.saturating_mul(m) >= max {
                return step.saturating_mul(m).max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// Lines over time: `labels[i]` names bucket `i`, `series[j].1[i]` is series `j`'s value
/// there. The legend shows each series' total.
pub(crate) fn lines(id: &str, labels: &[String], series: &[(&str, Vec<u64>)]) -> String {
    let (left, right, top, bottom) = MARGIN;
    let (w, h) = (WIDTH - left - right, HEIGHT - top - bottom);
    let max = nice_max(
        series
            .iter()
            .flat_map(|s| s.1.iter().copied())
            .max()
            .unwrap_or(0),
    );
    let n = labels.len();
    let x = |i: usize| {
        if n <= 1 {
            left + w / 2.0
        } else {
            left + w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: u64| top + h - h * v as f64 / max as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg id=\"{id}\" class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\">"
    );
    axes(&mut svg, max);
    // At most about eight x labels, always the first and the last.
    let every = n.div_ceil(8).max(1);
    for (i, label) in labels.iter().enumerate() {
        if i % every == 0 || i + 1 == n {
            let _ = write!(
                svg,
                "<text class=\"xlabel\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                 font-size=\"10\">{}</text>",
                x(i),
                top + h + 14.0,
                html_escape(label)
            );
        }
    }
    for (j, (name, values)) in series.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        let name = html_escape(name);
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            svg,
            "<g class=\"series\" data-series=\"{name}\"><polyline fill=\"none\" \
             stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        for (i, v) in values.iter().enumerate() {
            let label = labels.get(i).map_or("", String::as_str);
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\" data-value=\"{v}\">\
                 <title>{}: {name} {v}</title></circle>",
                x(i),
                y(*v),
                html_escape(label)
            );
        }
        svg.push_str("</g>");
    }
    // The legend: one entry per series with its total.
    let mut lx = left;
    for (j, (name, values)) in series.iter().enumerate() {
        let total: u64 = values.iter().sum();
        let colour = COLOURS[j % COLOURS.len()];
        let ly = HEIGHT - 12.0;
        let _ = write!(
            svg,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text class=\"legend\" data-series=\"{n}\" data-total=\"{total}\" x=\"{:.1}\" \
             y=\"{ly:.1}\" font-size=\"11\">{n} {total}</text>",
            ly - 9.0,
            lx + 14.0,
            n = html_escape(name)
        );
        lx += 120.0;
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars, one per `(label, value)`, the value written after each bar.
pub(crate) fn bars(id: &str, rows: &[(String, u64)]) -> String {
    let row_h = 22.0;
    let label_w = 220.0;
    let height = (rows.len().max(1) as f64) * row_h + 8.0;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let bar_w = WIDTH - label_w - 60.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg id=\"{id}\" class=\"chart bars\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\">"
    );
    if rows.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"8\" y=\"18\" font-size=\"12\">nothing in this period</text>"
        );
    }
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let len = bar_w * *value as f64 / max as f64;
        let label = html_escape(label);
        let _ = write!(
            svg,
            "<g class=\"bar\" data-label=\"{label}\" data-value=\"{value}\">\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"12\">{label}</text>\
             <rect x=\"{label_w:.1}\" y=\"{y:.1}\" width=\"{len:.1}\" height=\"{:.1}\" \
             fill=\"{}\"><title>{label}: {value}</title></rect>\
             <text class=\"value\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{value}</text></g>",
            label_w - 6.0,
            y + 14.0,
            row_h - 6.0,
            COLOURS[0],
            label_w + len + 6.0,
            y + 14.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The y axis (0, half, max, with grid lines) and the x axis line.
fn axes(svg: &mut String, max: u64) {
    let (left, right, top, bottom) = MARGIN;
    let (w, h) = (WIDTH - left - right, HEIGHT - top - bottom);
    let ticks: &[u64] = if max >= 2 {
        &[0, max / 2, max]
    } else {
        &[0, max]
    };
    for &t in ticks {
        let y = top + h - h * t as f64 / max as f64;
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text class=\"ylabel\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" \
             font-size=\"10\">{t}</text>",
            left + w,
            left - 4.0,
            y + 3.0
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#888\"/>",
        top + h
    );
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(200), 200);
        assert_eq!(nice_max(201), 500);
    }

    #[test]
    fn lines_show_every_value_and_the_totals() {
        let labels = vec!["09:00".to_owned(), "10:00".to_owned(), "11:00".to_owned()];
        let svg = lines(
            "t",
            &labels,
            &[("hard", vec![1, 0, 3]), ("soft", vec![0, 2, 0])],
        );
        assert!(svg.starts_with("<svg id=\"t\""), "{svg}");
        assert!(svg.contains("<title>11:00: hard 3</title>"), "{svg}");
        assert!(svg.contains("<title>10:00: soft 2</title>"), "{svg}");
        assert!(
            svg.contains("data-series=\"hard\" data-total=\"4\""),
            "{svg}"
        );
        assert!(svg.contains(">soft 2</text>"), "{svg}");
        // Scale 0..5: 3 is at 3/5 of the plot height from its bottom (12 + 176 = 188).
        let y3 = 188.0 - 176.0 * 3.0 / 5.0;
        assert!(svg.contains(&format!("cy=\"{y3:.1}\"")), "{svg}");
        assert!(svg.contains(">5</text>"), "the y axis' top label: {svg}");
        assert_eq!(svg.matches("<circle").count(), 6);
    }

    #[test]
    fn bars_escape_their_labels() {
        let svg = bars(
            "b",
            &[("<x>@example.net".into(), 7), ("user-unknown".into(), 2)],
        );
        assert!(svg.contains("data-label=\"&lt;x&gt;@example.net\" data-value=\"7\""));
        assert!(!svg.contains("<x>"));
        assert!(svg.contains("<title>user-unknown: 2</title>"));
        assert!(bars("e", &[]).contains("nothing in this period"));
    }
}
