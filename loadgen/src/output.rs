//! Latency written to files: the HdrHistogram interval log and an SVG
//! chart of latency by percentile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2Serializer;
use hdrhistogram::Histogram;

/// Interval histograms as they arrive, written out at the end.
pub struct HistLog {
    path: PathBuf,
    start: (Instant, SystemTime),
    intervals: Vec<(Duration, Histogram<u64>)>,
}

impl HistLog {
    pub fn create(path: &Path) -> Result<HistLog, String> {
        // Fail now, not after the run, when the file cannot be written.
        std::fs::File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(HistLog {
            path: path.to_path_buf(),
            start: (Instant::now(), SystemTime::now()),
            intervals: Vec::new(),
        })
    }

    /// One shard's histogram of the second that just ended.
    pub fn write(&mut self, hist: &Histogram<u64>) {
        if !hist.is_empty() {
            self.intervals.push((self.start.0.elapsed(), hist.clone()));
        }
    }

    pub fn finish(&mut self) -> Result<(), String> {
        let fail = |e: String| format!("cannot write {}: {e}", self.path.display());
        let mut out = Vec::new();
        let mut serializer = V2Serializer::new();
        let mut writer = IntervalLogWriterBuilder::new()
            .add_comment("loadgen latency intervals, values in nanoseconds, one histogram per shard and second")
            .with_start_time(self.start.1)
            .with_base_time(self.start.1)
            .with_max_value_divisor(1e6)
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| fail(e.to_string()))?;
        for (end, hist) in &self.intervals {
            let start = end.saturating_sub(Duration::from_secs(1));
            writer
                .write_histogram(hist, start, Duration::from_secs(1), None)
                .map_err(|e| fail(e.to_string()))?;
        }
        std::fs::write(&self.path, out).map_err(|e| fail(e.to_string()))
    }
}

/// Draws latency against percentile, the x axis stretched as
/// log10(1 / (1 - q)) so the tail gets the room.
pub fn plot(path: &Path, hist: &Histogram<u64>, title: &str) -> Result<(), String> {
    use plotters::prelude::*;

    let fail = |e: String| format!("cannot draw {}: {e}", path.display());
    if hist.is_empty() {
        return Err(fail("no latency was recorded".into()));
    }
    let stretch = |q: f64| -(1.0 - q.min(0.999_999)).log10();
    let points: Vec<(f64, f64)> = hist
        .iter_quantiles(5)
        .map(|v| {
            (
                stretch(v.quantile_iterated_to()),
                v.value_iterated_to() as f64 / 1000.0,
            )
        })
        .collect();
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max).ceil();
    let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| {
            let q = 100.0 * (1.0 - 10f64.powf(-x));
            format!("{}%", (q * 1000.0).round() / 1000.0)
        })
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    chart
        .draw_series(LineSeries::new(points, &BLUE))
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))
}
