//! `usage --html FILE`: the usage report as one self-contained page (inline CSS and SVG,
//! nothing fetched): per-key table, requests per day, rotations; a section per provider.

use super::usage::{KeyUsage, UsageReport};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `usage --html FILE` for one provider or a pool: one page, a section per provider.
pub fn usage_html(reports: &[UsageReport]) -> String {
    let providers: Vec<String> = reports.iter().map(|r| esc(&r.provider)).collect();
    let sections: String = reports.iter().map(section).collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>autolabel usage: {title}</title>\n<style>\
body{{font-family:system-ui,sans-serif;margin:2em;color:#1a202c}}table{{border-collapse:collapse;margin:1em 0}}\
td,th{{border:1px solid #cbd5e0;padding:4px 8px;text-align:right}}td:nth-child(2),th{{text-align:left}}\
.h-healthy{{background:#c6f6d5}}.h-warning{{background:#fefcbf}}.h-critical{{background:#fed7d7}}</style></head><body>\n\
{sections}</body></html>\n",
        title = providers.join(", "),
    )
}

fn key_row(k: &KeyUsage) -> String {
    let total = &k.total;
    let rate = total
        .success_pct()
        .map_or("-".into(), |p| format!("{p:.1} %"));
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"h-{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>${:.4}</td><td>{}</td></tr>\n",
        k.index.map_or("-".into(), |i| format!("#{i}")),
        esc(&k.key),
        esc(&k.status),
        k.health,
        k.health,
        k.today.requests,
        total.requests,
        total.successes,
        total.error_total(),
        rate,
        total.rows,
        total.tokens_per_row.map_or("-".into(), |t| format!("{t:.1}")),
        total.cost_usd,
        k.remaining
            .requests_today
            .map_or("-".into(), |r| r.to_string()),
    )
}

/// Requests per day, one bar group per day, one bar per key.
fn requests_chart(keys: &[KeyUsage]) -> (String, String) {
    let mut days: Vec<&str> = keys
        .iter()
        .flat_map(|k| k.days.iter().map(|d| d.date.as_str()))
        .collect();
    days.sort();
    days.dedup();
    let max = keys
        .iter()
        .flat_map(|k| k.days.iter().map(|d| d.usage.requests))
        .max()
        .unwrap_or(0)
        .max(1);
    let colors = [
        "#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096",
    ];
    let (w, h, pad) = (720.0, 220.0, 30.0);
    let group = if days.is_empty() {
        w
    } else {
        (w - pad) / days.len() as f64
    };
    let bar = (group * 0.8 / keys.len().max(1) as f64).clamp(1.0, 40.0);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"requests per day\">",
        h + 40.0
    );
    for (di, day) in days.iter().enumerate() {
        let x0 = pad + di as f64 * group;
        for (ki, k) in keys.iter().enumerate() {
            let reqs = k
                .days
                .iter()
                .find(|d| d.date == *day)
                .map_or(0, |d| d.usage.requests);
            let bh = reqs as f64 / max as f64 * h;
            svg.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {} requests</title></rect>",
                x0 + ki as f64 * bar,
                h - bh,
                bar,
                bh,
                colors[ki % colors.len()],
                esc(&k.key),
                esc(day),
                reqs
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{}</text>",
            x0,
            h + 16.0,
            esc(day.get(5..).unwrap_or(day))
        ));
    }
    svg.push_str(&format!(
        "<text x=\"0\" y=\"12\" font-size=\"11\">{max}</text></svg>"
    ));
    let legend: String = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            format!(
                "<span style=\"color:{}\">■</span> {} ",
                colors[i % colors.len()],
                esc(&k.key)
            )
        })
        .collect();
    (svg, legend)
}

/// One provider's part of the usage page: key table, requests per day, rotations.
fn section(r: &UsageReport) -> String {
    let rows: String = r.keys.iter().map(key_row).collect();
    let (svg, legend) = requests_chart(&r.keys);
    let rotations: String = r
        .rotations
        .iter()
        .map(|rot| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&rot.time),
                esc(&rot.from),
                esc(&rot.to),
                esc(&rot.reason),
                esc(&rot.mode)
            )
        })
        .collect();
    format!(
        "<h1>autolabel usage: {provider}</h1><p>{from} to {to} · generated {generated}</p>\n\
<h2>Keys</h2><table><tr><th>#</th><th>key</th><th>status</th><th>health</th><th>today</th><th>requests</th><th>ok</th><th>errors</th><th>success rate</th><th>rows</th><th>tokens/row</th><th>cost</th><th>left today</th></tr>\n{rows}</table>\n\
<h2>Requests per day</h2>{svg}<p>{legend}</p>\n\
<h2>Recent rotations</h2><table><tr><th>time</th><th>from</th><th>to</th><th>reason</th><th>mode</th></tr>{rotations}</table>\n",
        provider = esc(&r.provider),
        from = esc(&r.from),
        to = esc(&r.to),
        generated = esc(&r.generated_at),
    )
}
