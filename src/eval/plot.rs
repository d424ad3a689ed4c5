//! The cost/quality curve as SVG: accuracy against cost (or the share of requests that
//! reached the strongest tier), with each model alone, the chain settings as a line,
//! random routing, and the straight line from the cheapest model alone to the most
//! expensive — what mixing them at random gives on average.

use plotters::prelude::*;

use super::report::{Point, Report};

const SIZE: (u32, u32) = (860, 540);

pub fn curve(report: &Report) -> Result<String, String> {
    let mut svg = String::new();
    draw(report, &mut svg).map_err(|e| format!("cannot draw the curve: {e}"))?;
    Ok(svg)
}

fn draw(report: &Report, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let points = &report.curve.points;
    let max_x = points.iter().map(|p| p.x).fold(0.0_f64, f64::max);
    let x_end = if max_x > 0.0 { max_x * 1.12 } else { 1.0 };
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!("tierwise eval: {} ({} items)", report.task, report.items);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_end, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc(report.x_label())
        .y_desc("accuracy")
        .y_label_formatter(&|y| format!("{:.0} %", y * 100.0))
        .draw()?;

    let of = |kind: &'static str| points.iter().filter(move |p| p.kind == kind);
    let mut alone: Vec<&Point> = of("alone").collect();
    alone.sort_by(|a, b| a.x.total_cmp(&b.x));
    if let (Some(first), Some(last)) = (alone.first(), alone.last()) {
        chart
            .draw_series(LineSeries::new(
                [(first.x, first.accuracy), (last.x, last.accuracy)],
                RGBColor(150, 150, 150).stroke_width(1),
            ))?
            .label("random mix of the cheapest and the costliest model (expected)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RGBColor(150, 150, 150)));
    }
    let mut chain: Vec<&Point> = of("chain").collect();
    chain.sort_by(|a, b| a.x.total_cmp(&b.x));
    chart
        .draw_series(LineSeries::new(chain.iter().map(|p| (p.x, p.accuracy)), BLUE.stroke_width(2)))?
        .label("chain settings")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    for (kind, color) in [("chain", BLUE), ("alone", BLACK), ("random", RED)] {
        chart.draw_series(of(kind).map(|p| Circle::new((p.x, p.accuracy), 4, color.filled())))?;
        chart.draw_series(
            of(kind).map(|p| {
                Text::new(p.strategy.clone(), (p.x, p.accuracy), ("sans-serif", 12).into_font().color(&color))
            }),
        )?;
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.85)).draw()?;
    root.present()?;
    Ok(())
}
