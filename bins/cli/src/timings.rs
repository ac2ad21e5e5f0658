//! `facerec detect --timings`: where one photo's detection and embedding time goes, stage by
//! stage, averaged over warm runs.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use facerec::{FaceEngine, Timings};
use image::RgbImage;
use serde_json::{Value, json};

/// Mean stage times over warm detections of one photo, and the mean time to embed its faces.
pub(crate) struct Report {
    /// The warm-up run, which also finds the faces to embed. It builds the tract plans of the
    /// image's size only when nothing ran on that size before (`facerec detect` analyses the
    /// photo first, so there it is already warm).
    first: Duration,
    runs: usize,
    mean: Timings,
    embed: Duration,
}

/// Runs the detector once to warm its plans, then `runs` times (at least 1), then embeds the
/// faces found `runs` times.
pub(crate) fn measure(engine: &FaceEngine, image: &RgbImage, runs: usize) -> Result<Report> {
    let runs = runs.max(1);
    let detector = engine.detector();
    let started = Instant::now();
    let (faces, _) = detector.detect_timed(image, None)?;
    let first = started.elapsed();
    let all = (0..runs)
        .map(|_| Ok(detector.detect_timed(image, None)?.1))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    for _ in 0..runs {
        engine.embed_all(image, faces.clone())?;
    }
    Ok(Report {
        first,
        runs,
        mean: Timings::mean(&all).context("no run timed")?,
        embed: started.elapsed() / u32::try_from(runs).unwrap_or(u32::MAX),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Report {
    /// Prints the report as text.
    pub(crate) fn print(&self) {
        println!(
            "timings: mean of {} runs after a warm-up run of {:.1} ms, on {} threads",
            self.runs,
            ms(self.first),
            rayon::current_num_threads()
        );
        println!("{}", self.mean);
        println!(
            "embed {} face(s): {:.2} ms",
            self.mean.faces,
            ms(self.embed)
        );
    }

    /// The report as JSON (milliseconds).
    pub(crate) fn json(&self) -> Value {
        let t = &self.mean;
        json!({
            "runs": self.runs,
            "threads": rayon::current_num_threads(),
            "first_ms": ms(self.first),
            "detect_ms": ms(t.total),
            "pnet_ms": ms(t.pnet),
            "pnet_nms_ms": ms(t.pnet_nms),
            "rnet_ms": ms(t.rnet),
            "onet_ms": ms(t.onet),
            "embed_ms": ms(self.embed),
            "pnet_boxes": t.pnet_boxes,
            "rnet_boxes": t.rnet_boxes,
            "faces": t.faces,
            "levels": t.levels.iter().map(|l| json!({
                "width": l.width,
                "height": l.height,
                "resize_ms": ms(l.resize),
                "pnet_ms": ms(l.pnet),
                "nms_ms": ms(l.nms),
                "cells": l.cells,
                "kept": l.kept,
            })).collect::<Vec<_>>(),
        })
    }
}
