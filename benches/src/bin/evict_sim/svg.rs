//! The hit-ratio-against-pool-size plot, written as SVG directly (no plotting
//! dependency): one panel per trace, one line per policy plus Belady, a dashed line
//! at the unlimited pool's ratio, and the command that made it.

use std::fmt::Write;

pub struct Chart {
    pub title: String,
    pub unlimited: f64,
    /// (name, [(pool multiple, hit ratio)]).
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

const W: f64 = 420.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;
const COLORS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

pub fn render(charts: &[Chart], base_mib: u64, cmd: &str) -> String {
    let total_w = W * charts.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{}" font-family="sans-serif" font-size="11">"#,
        H + 40.0
    );
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (ci, c) in charts.iter().enumerate() {
        let ox = W * ci as f64;
        let xs: Vec<f64> = c
            .series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.0))
            .collect();
        let (xmin, xmax) = xs
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let ymax = c
            .series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.1))
            .fold(c.unlimited, f64::max)
            .max(0.05)
            * 1.1;
        // log2 x axis: pool multiples 0.5..4 spread evenly.
        let px = |x: f64| {
            let span = (xmax.log2() - xmin.log2()).max(1e-9);
            ox + PAD + (x.log2() - xmin.log2()) / span * (W - 1.6 * PAD)
        };
        let py = |y: f64| H - PAD + 10.0 - y / ymax * (H - 1.6 * PAD);
        let _ = write!(
            s,
            r#"<text x="{}" y="18" font-size="13" font-weight="bold">{}</text>"#,
            ox + PAD,
            c.title
        );
        let _ = write!(
            s,
            r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="black"/><line x1="{0}" y1="{1}" x2="{0}" y2="{3}" stroke="black"/>"#,
            px(xmin),
            py(0.0),
            px(xmax),
            py(ymax)
        );
        for &x in &xs[..c.series[0].1.len()] {
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                px(x),
                py(0.0) + 14.0,
                (x * base_mib as f64).round()
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">pool (MiB)</text>"#,
            ox + W / 2.0,
            py(0.0) + 28.0
        );
        for k in 0..=5 {
            let y = ymax / 1.1 * k as f64 / 5.0;
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{y:.2}</text>"#,
                px(xmin) - 4.0,
                py(y) + 4.0
            );
        }
        let _ = write!(
            s,
            r#"<line x1="{0}" y1="{2}" x2="{1}" y2="{2}" stroke="gray" stroke-dasharray="4 3"/><text x="{3}" y="{4}" fill="gray">unlimited {5:.3}</text>"#,
            px(xmin),
            px(xmax),
            py(c.unlimited),
            px(xmin) + 4.0,
            py(c.unlimited) - 4.0,
            c.unlimited
        );
        for (si, (name, pts)) in c.series.iter().enumerate() {
            let color = COLORS[si % COLORS.len()];
            let path: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            let ly = PAD + 14.0 * si as f64;
            let _ = write!(
                s,
                r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="{color}" stroke-width="2"/><text x="{3}" y="{4}">{name}</text>"#,
                ox + W - 120.0,
                ly,
                ox + W - 100.0,
                ox + W - 95.0,
                ly + 4.0
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="10" y="{}" fill="#444">{}</text>"##,
        H + 30.0,
        cmd.replace('&', "&amp;").replace('<', "&lt;")
    );
    s.push_str("</svg>\n");
    s
}
